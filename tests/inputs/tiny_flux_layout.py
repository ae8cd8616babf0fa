"""A hand-made tiny Flux layout (one double and one single block, the final layer, one
embedder, one CLIP layer) shared by the writer unit tests: pure data, no diffusers."""

from __future__ import annotations

from harness.inputs.checkpoints.lora.layouts import ComponentLayout, Layer

D = 8  # inner width of the hand-made Flux layout; proj_mlp is 4 * D
HEAD = 4  # its head dimension (width of the q/k RMSNorm scales)


def flux_layout() -> dict[str, ComponentLayout]:
    layers = {
        "transformer_blocks.0.attn.to_q": Layer(D, D),
        "transformer_blocks.0.attn.to_k": Layer(D, D),
        "transformer_blocks.0.attn.to_v": Layer(D, D),
        "transformer_blocks.0.attn.to_out.0": Layer(D, D),
        "transformer_blocks.0.attn.add_q_proj": Layer(D, D),
        "transformer_blocks.0.attn.add_k_proj": Layer(D, D),
        "transformer_blocks.0.attn.add_v_proj": Layer(D, D),
        "transformer_blocks.0.attn.to_add_out": Layer(D, D),
        "single_transformer_blocks.0.attn.to_q": Layer(D, D),
        "single_transformer_blocks.0.attn.to_k": Layer(D, D),
        "single_transformer_blocks.0.attn.to_v": Layer(D, D),
        "single_transformer_blocks.0.proj_mlp": Layer(D, 4 * D),
        "single_transformer_blocks.0.proj_out": Layer(5 * D, D),
        "norm_out.linear": Layer(D, 2 * D),
        "x_embedder": Layer(4, D),
    }
    te = {"text_model.encoder.layers.0.self_attn.q_proj": Layer(4, 4)}
    return {
        "transformer": ComponentLayout(layers, {"attention_head_dim": HEAD}),
        "text_encoder": ComponentLayout(te),
    }
