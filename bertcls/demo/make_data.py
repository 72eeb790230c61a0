"""Generate the synthetic Chinese sentiment dataset used by `make demo`.

The data is synthetic and was written for this project: short Simplified Chinese product and service
reviews (hotel, restaurant, phone, book, delivery) built from hand-written templates, labelled
`negative` or `positive`. No real reviews or third-party corpora are used.

Sentiment words appear in both classes on purpose: negation flips them (不太干净, 一点也不差) and in
contrast sentences (虽然…但是…) only the clause after the connector decides the label, so a model has
to look at word order and context, not at a single keyword.

Run from the repository root: `python bertcls/demo/make_data.py`. The output is deterministic.
"""

import random
from pathlib import Path

SEED = 20261125
SIZES = {"train": 800, "validation": 200, "test": 200}  # rows per split, half of each label
OUT_DIR = Path(__file__).resolve().parent

# Neutral filler clauses per domain: they vary length and wording without hinting at the label.
FILLERS = {
    "hotel": "出差住的这家 周末和家人来的 住了两晚 订的大床房 晚上十点才入住 第3次住这家了",
    "restaurant": "和朋友一起去的 点了四个菜 中午去的 排队等了20分钟 朋友推荐来的 点的外卖",
    "phone": "用了一个星期 给家里老人买的 双十一买的 换机用了半个月 第二台了 昨天刚收到",
    "book": "看了一半 一口气读完了 买给孩子的 朋友推荐买的 读了两遍 睡前翻了几章",
    "delivery": "下午三点下的单 周一寄出的 买的生鲜 寄到外地的 第二天就到了 等了一整天",
}
# Aspects per domain, separated by "/", each "aspect:positive words:negative words".
ASPECTS = {
    "hotel": "房间:干净 宽敞 安静:脏 小 吵/服务:周到 热情:冷淡 差劲/前台:热情 耐心:冷淡 敷衍/早餐:丰富 好吃:单调 难吃/"
    "床:舒服 软和:硬 窄/隔音:好:差/位置:方便 好找:偏 难找",
    "restaurant": "味道:好 正宗 鲜:淡 咸 油腻/菜:新鲜 好吃:难吃 凉/服务员:热情 勤快:冷淡 慢/环境:好 干净 安静:吵 脏/"
    "分量:足 大:少 小/上菜:快 及时:慢/价格:实惠 公道:贵",
    "phone": "屏幕:清楚 亮 细腻:暗 模糊/电池:耐用 给力:差/拍照:清楚 好看:模糊 差/信号:好 稳定:差 弱/"
    "系统:流畅 稳定:卡 慢/手感:好 舒服:差 沉/充电:快:慢/物流:快:慢",
    "book": "剧情:精彩 紧凑:拖沓 无聊/内容:充实 有趣:空洞 无聊/翻译:流畅 准确:生硬 别扭/印刷:清楚 精美:模糊 粗糙/"
    "纸张:厚实 好:薄 差/结局:精彩 感人:仓促 老套/包装:结实 好:破 简陋",
    "delivery": "物流:快 及时:慢 拖拉/快递员:热情 耐心:冷淡 粗鲁/包装:结实 严实:破 简陋/送货:准时 快:慢 拖拉/"
    "客服:耐心 热情:冷淡 敷衍",
}
DOMAINS = {  # domain -> (fillers, [(aspect, positive words, negative words), ...])
    d: (FILLERS[d].split(), [(a, p.split(), n.split()) for a, p, n in (x.split(":") for x in ASPECTS[d].split("/"))])
    for d in FILLERS
}
# Intensifiers: most fit both polarities, 有点/有些 only fit complaints, 还算/蛮 only fit praise (as in real reviews).
INTENSIFIERS = (["非常", "特别", "很", "挺", "相当", "真的", "超级"], ["还算", "蛮"], ["有点", "有些"])
# Negations flip polarity; the two lists differ because 不太脏 or 不够慢 would not read as praise.
NEGATE_POSITIVE = ["不太", "不够", "并不", "一点也不", "不是很"]
NEGATE_NEGATIVE = ["并不", "一点也不", "一点都不", "完全不", "不算", "没那么"]
# Overall verdicts share words across labels (推荐, 满意, 失望, 会) so none of them is a giveaway on its own.
OVERALL = (
    ["总体来说不满意", "不值得推荐", "只能给一星", "让我很失望", "下次不会再选它了", "不值这个价"],
    ["总体来说很满意", "值得推荐", "给五星好评", "没有让我失望", "下次还选它", "物有所值"],
)
# Contrast connectors: the clause after the second one decides the label.
CONTRASTS = [("虽然", "但是"), ("虽然", "不过"), ("", "但是"), ("", "可是"), ("", "不过"), ("本来以为", "没想到")]


def clause(rng, aspect, positive):
    """One evaluation of `aspect` with the given polarity, either direct or as a negated opposite."""
    name, pos_words, neg_words = aspect
    if rng.random() < 0.25:  # negation: take a word of the opposite polarity and negate it
        negations, words = (NEGATE_NEGATIVE, neg_words) if positive else (NEGATE_POSITIVE, pos_words)
        return name + rng.choice(negations) + rng.choice(words)
    word = rng.choice(pos_words if positive else neg_words)
    if rng.random() < 0.15:
        return f"{name}太{word}了"
    both, pos_only, neg_only = INTENSIFIERS
    return name + rng.choice(both + (pos_only if positive else neg_only)) + word


def review(rng, positive):
    """One review text whose label is `positive`; the sentence shape is drawn at random."""
    fillers, aspects = DOMAINS[rng.choice(sorted(DOMAINS))]
    a1, a2 = rng.sample(aspects, 2)
    parts = [rng.choice(fillers)] if rng.random() < 0.35 else []
    # 30% contrast and 25% negation keep it learnable: a tiny BERT gets ~90%, a bag of character n-grams ~80%.
    if rng.random() < 0.3:  # contrast: the first clause has the opposite polarity, the second decides
        first, second = rng.choice(CONTRASTS)
        if first == "本来以为":  # expectation then reality, about the same aspect: 本来以为房间会很小，没想到挺宽敞
            parts.append(f"本来以为{a1[0]}会很{rng.choice(a1[2] if positive else a1[1])}")
            parts.append(second + clause(rng, a1, positive)[len(a1[0]) :])
        else:
            parts += [first + clause(rng, a1, not positive), second + clause(rng, a2, positive)]
    else:
        parts.append(clause(rng, a1, positive))
        if rng.random() < 0.4:
            parts.append(clause(rng, a2, positive))
    if rng.random() < 0.25:
        parts.append(rng.choice(OVERALL[positive]))
    return "，".join(parts) + rng.choice(["。", "。", "！", ""])


def main():
    rng = random.Random(SEED)
    total = sum(SIZES.values())
    seen, by_label = set(), {"negative": [], "positive": []}
    for label, rows in by_label.items():
        while len(rows) < total // 2:  # dedupe across the whole dataset, so a text lands in one split only
            text = review(rng, label == "positive")
            if 8 <= len(text) <= 60 and text not in seen:
                seen.add(text)
                rows.append((label, text))
    splits = {name: [] for name in SIZES}
    for rows in by_label.values():  # stratified split: every split is exactly balanced
        start = 0
        for name, size in SIZES.items():
            splits[name] += rows[start : start + size // 2]
            start += size // 2
    for name, rows in splits.items():
        rng.shuffle(rows)
        with open(OUT_DIR / f"{name}.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.write("label\ttext\n")
            f.writelines(f"{label}\t{text}\n" for label, text in rows)
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
