"""The distillation Trainer: ClassificationTrainer (its optimizer groups, length-grouped sampler, evaluation in
order, hard-label loss) whose training loss is distillation's.

Training rows carry `teacher_row`, their row in the cached teacher logits (teacher.py), and `labelled`; evaluation
rows carry neither and are scored by the hard-label loss, as in fine-tuning, so eval_loss means the same thing in
both. With --hidden_weight or --attention_weight the teacher also runs on every training batch (its activations
are not cached: they are [rows, tokens, width] per layer).
"""

import logging
import os

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from bertcls.distill.losses import DistillationLoss, attention_loss, hidden_state_loss
from bertcls.training.trainer import ClassificationTrainer

logger = logging.getLogger(__name__)

EXTRA_COLUMNS = ("teacher_row", "labelled")
PROJECTION_FILE = "distill_projection.pt"  # in checkpoints: the learned width projection, for resuming


class DistillationTrainer(ClassificationTrainer):
    def __init__(
        self,
        *args,
        teacher_logits=None,
        distillation: DistillationLoss = None,
        teacher_model=None,
        hidden_weight: float = 0.0,
        attention_weight: float = 0.0,
        layer_map=None,
        projection: torch.nn.Module | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.teacher_logits = teacher_logits
        self.distillation = distillation
        self.hidden_weight, self.attention_weight, self.layer_map = hidden_weight, attention_weight, layer_map
        self.teacher_model = teacher_model.to(self.args.device).eval() if teacher_model is not None else None
        self.projection = projection.to(self.args.device) if projection is not None else None

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *EXTRA_COLUMNS]))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # not popped from the caller's batch: --adversarial fgm scores the same batch twice
        rows, labelled = inputs.pop("teacher_row", None), inputs.pop("labelled", None)
        if rows is None:  # evaluation rows: the hard-label loss, as in fine-tuning
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.get("labels")
        features = {k: v for k, v in inputs.items() if k != "labels"}
        layers = {"output_hidden_states": self.hidden_weight > 0, "output_attentions": self.attention_weight > 0}
        outputs = model(**features, **{k: True for k, on in layers.items() if on})
        teacher = torch.from_numpy(self.teacher_logits[rows.cpu().numpy()]).to(outputs.logits.device)
        loss, _ = self.distillation(outputs.logits, teacher, labels, labelled)
        if self.teacher_model is not None:
            with torch.no_grad():
                taught = self.teacher_model(**features, **{k: True for k, on in layers.items() if on})
            mask = features["attention_mask"]
            if self.hidden_weight > 0:
                loss = loss + self.hidden_weight * hidden_state_loss(
                    outputs.hidden_states, taught.hidden_states, self.layer_map, mask, self.projection
                )
            if self.attention_weight > 0:
                loss = loss + self.attention_weight * attention_loss(
                    outputs.attentions, taught.attentions, self.layer_map, mask
                )
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.projection is not None and not any(
            p is next(self.projection.parameters()) for g in optimizer.param_groups for p in g["params"]
        ):
            optimizer.add_param_group(
                {"params": list(self.projection.parameters()), "lr": self.args.learning_rate, "weight_decay": 0.0}
            )
        return optimizer

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.projection is not None and self.is_world_process_zero():
            folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            torch.save(self.projection.state_dict(), os.path.join(folder, PROJECTION_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, PROJECTION_FILE)
        if self.projection is not None and os.path.isfile(path):
            self.projection.load_state_dict(torch.load(path, map_location=self.args.device, weights_only=True))
