"""Model families beyond SD / Flux: the LoRA mixins each release has, tiny pipelines,
diffusers/PEFT files and the lifecycle rows (issue #20)."""
