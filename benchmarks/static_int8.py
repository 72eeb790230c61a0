"""Static (calibrated) int8 against the dynamic int8 that `bertcls export --quantize int8` ships.

Dynamic int8 quantizes each batch's activations with that batch's own range, so a row's answer can depend on its
batch-mates (4 of 1,200 ChnSentiCorp test rows changed label between batch 1 and batch 32 in docs/shipping.md).
Static int8 fixes every activation's scale once, from calibration rows, which should remove that dependence; the
question is what it costs in accuracy. This measures both on a model that learned:

1. the 2 x 32 BERT of `benchmarks/inference.py`'s accuracy run (fine-tuned 2 epochs on ChnSentiCorp train,
   max_seq_length 64), exported to ONNX fp32 (not optimized: static quantization works on the plain graph);
2. dynamic int8 of that graph (what export ships) and static int8 (onnxruntime.quantization.quantize_static, QDQ
   format, per-channel int8 weights, MinMax calibration) calibrated on --calibration_rows train rows, never the
   test rows it is scored on: of every op it can quantize, and of the matrix products only (uint8 activations);
3. on all 1,200 test rows: accuracy, agreement with ONNX fp32, and labels changed between batch 1 and batch 32.

    python benchmarks/static_int8.py [--calibration_rows 512] [--json]
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile

from inference import CHNSENTICORP, accuracy, export_folder
from measure import REPO, use_repo_package

use_repo_package()

# name: (activation type, the op types quantized; None: every op ONNX Runtime can quantize)
STATIC = {
    "onnx_int8_static_all_ops": ("QInt8", None),
    "onnx_int8_static_matmul": ("QUInt8", ["MatMul", "Gemm"]),  # the matrix products only, as dynamic int8 does
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration_rows", type=int, default=512, help="Train rows that calibrate static int8.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the tools' summaries; stdout holds the result
        reference = accuracy(2, args.threads)  # trains once into .cache/bench-models/, then reuses it
        result = measure(reference, args)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


def measure(reference: dict, args) -> dict:
    import pandas as pd
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from bertcls.model.runtime import Classifier, pad_batch
    from bertcls.shipping.export import quantize_graph

    run = os.path.join(REPO, ".cache", "bench-models", "mini-chnsenticorp-2ep")
    check = os.path.join(CHNSENTICORP, "test.tsv")
    plain = export_folder(run, "onnx-fp32-plain", [], args.threads, check, 16)["folder"]
    fp32 = Classifier.load(plain, threads=args.threads)
    data_args = fp32.data_args()
    test = pd.read_csv(check, sep="\t", quoting=3, dtype=str, keep_default_na=False)
    gold = test["label"].map(fp32.labels.label2id).to_numpy()
    train = pd.read_csv(f"{CHNSENTICORP}/train.tsv", sep="\t", quoting=3, dtype=str, keep_default_na=False)
    calibration = train["text_a"].sample(args.calibration_rows, random_state=0).tolist()

    class Rows(CalibrationDataReader):
        """Calibration batches of 32, encoded and padded exactly as the classifier feeds the graph."""

        def __init__(self):
            encoded = fp32.encode_texts(calibration, None, data_args)
            inputs = fp32.backend.input_names
            rows = [{k: encoded[k][i] for k in inputs} for i in range(len(calibration))]
            self.batches = iter(
                pad_batch(rows[i : i + 32], fp32.tokenizer.pad_token_id) for i in range(0, len(rows), 32)
            )

        def get_next(self):
            return next(self.batches, None)

    forms = {"onnx_fp32": fp32}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("onnx_int8_dynamic", *STATIC):
            folder = os.path.join(tmp, name)
            shutil.copytree(plain, folder)
            target = os.path.join(folder, "model.onnx")
            if name == "onnx_int8_dynamic":
                quantize_graph(os.path.join(plain, "model.onnx"), target)
            else:
                activations, op_types = STATIC[name]
                quantize_static(
                    os.path.join(plain, "model.onnx"),
                    target,
                    Rows(),
                    quant_format=QuantFormat.QDQ,
                    activation_type=getattr(QuantType, activations),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=op_types,
                )
            forms[name] = Classifier.load(folder, threads=args.threads)
        texts = test["text_a"].tolist()
        labels = {}
        for name, classifier in forms.items():
            encoded = classifier.encode_texts(texts, None, data_args)
            decision = classifier.decision(data_args)
            at = {
                b: decision(classifier.probabilities(classifier.forward_features(encoded, b, False))) for b in (32, 1)
            }
            labels[name] = at
    result = {"model": reference["model"], "test_rows": len(texts), "calibration_rows": args.calibration_rows}
    for name, at in labels.items():
        result[name] = {
            "accuracy": round(float((at[32] == gold).mean()), 4),
            "agreement_with_fp32": round(float((at[32] == labels["onnx_fp32"][32]).mean()), 4),
            "labels_changed_batch_1_vs_32": int((at[1] != at[32]).sum()),
        }
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
