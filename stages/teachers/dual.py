"""The ``dual`` teacher: a (bigger) CLIP scored as a dual encoder (METHOD section 3).

Batch logits ``T = scale * normalize(s) . normalize(mean_f normalize(f_f))`` over valid
frames; frame-text relevance ``r_f = cos(s, f_f)`` on the raw frame features (padded
frames get 0; consumers mask them with ``frame_mask``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stages.extract.config import TeacherConfig


def masked_mean_video(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the L2-normalised valid frames, [B, F, D] -> [B, D] (zeros for no valid frame)."""
    weights = mask.to(frames.dtype).unsqueeze(-1)
    total = (F.normalize(frames, dim=-1) * weights).sum(1)
    return total / weights.sum(1).clamp(min=1.0)


class DualTeacher(torch.nn.Module):
    """CLIP as a dual encoder over cached sentence vectors and frame features."""

    kind = "dual"

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.scale = float(config.scale)

    @property
    def text_array(self) -> str:
        return f"text/{self.config.text}"

    @property
    def frames_array(self) -> str:
        return f"frames/{self.config.frames}"

    @property
    def mask_array(self) -> str:
        return f"frame_mask/{self.config.frames}"

    def required_arrays(self) -> list[str]:
        """Store arrays this teacher reads."""
        return [self.text_array, self.frames_array, self.mask_array]

    def check_sources(self, frame_encoder, text_encoder) -> None:
        """Refuse, before any work, encoders that are not one CLIP's two towers (the
        configs of the frame encoder and text encoder this teacher reads)."""
        same = text_encoder.kind == "open_clip" and (text_encoder.model, text_encoder.pretrained, text_encoder.seed) == (
            frame_encoder.model,
            frame_encoder.pretrained,
            frame_encoder.seed,
        )
        if not same:
            raise ValueError(
                f"teacher {self.config.name!r} (dual) reads frames/{frame_encoder.name} ({frame_encoder.model}, "
                f"pretrained={frame_encoder.pretrained!r}, seed={frame_encoder.seed}) and text/{text_encoder.name} "
                f"({text_encoder.kind} {text_encoder.model}, pretrained={text_encoder.pretrained!r}, seed={text_encoder.seed}); "
                "a dual teacher needs the open_clip text tower of the same model, weights and seed"
            )

    def check_dims(self, text_dim: int, frame_dim: int) -> None:
        """Refuse a text/frame pair whose widths differ (not one CLIP's two towers)."""
        if text_dim != frame_dim:
            raise ValueError(
                f"teacher {self.config.name!r} (dual): text/{self.config.text} has width {text_dim} but "
                f"frames/{self.config.frames} has {frame_dim}; a dual teacher needs one CLIP's text and image towers"
            )

    def relevance(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame cosine of each caption with its own video's frames: [n, D], [n, F, D] -> [n, F]."""
        cos = torch.einsum("nd,nfd->nf", F.normalize(text.float(), dim=-1), F.normalize(frames.float(), dim=-1))
        return cos.masked_fill(~mask.bool(), 0.0)

    def logits(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher logits for every caption-video pair of a batch: [Bt, D], [Bv, F, D] -> [Bt, Bv]."""
        video = F.normalize(masked_mean_video(frames.float(), mask.bool()), dim=-1)
        return self.scale * F.normalize(text.float(), dim=-1) @ video.T
