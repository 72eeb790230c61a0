"""Continued masked-LM pretraining (``bertcls pretrain``)."""
