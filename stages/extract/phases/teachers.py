"""Stage one, teachers phase. Per teacher: the inputs stage one prepares for its head
(caption banks, user scores), the head itself (fitted on the cached training split, loaded
from a checkpoint, or weightless; kept in the store with its own val/test metrics), and its
relevance over the caption shards. Heads read the cache, not the videos."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from teachcache.cache import schema
from teachcache.cache.schema import CAPTION_ROW, CAPTIONS, FRAMES_UNIT, VIDEO_ROW
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.common.data import store_splits
from teachcache.stages.common.device import cpu_threads
from teachcache.stages.extract.phases.base import Phase, PhaseResult
from teachcache.stages.teachers.base import TeacherError, TeacherHead
from teachcache.stages.teachers.fit import fit_head, split_for, teacher_metrics
from teachcache.stages.teachers.heads import build_teacher, load_checkpoint, load_teacher, save_head


class TeacherPhase(Phase):
    name = "teachers"

    def specs(self, known: dict[str, tuple[int, ...]]) -> list[ArraySpec]:
        num_frames = self.ctx.cfg.sampling.num_frames
        specs = []
        for name, t in self.ctx.cfg.teachers.items():
            head = build_teacher(t, known)
            specs.extend(head.input_specs(len(self.ctx.manifest.video_ids), self.ctx.caption_video))
            if head.has_relevance:
                specs.append(ArraySpec(schema.relevance(name), CAPTIONS, (num_frames,), "float16", schema.relevance_unit(name)))
        return specs

    def run(self, store: Store) -> PhaseResult:
        """Every teacher, on one CPU thread (the same bits at any core count; see ``cpu_threads``)."""
        with cpu_threads(self.ctx.device):
            return self._run(store)

    def _run(self, store: Store) -> PhaseResult:
        result = PhaseResult()
        if not self.ctx.cfg.teachers:
            return result
        for unit in [*(schema.text_unit(n) for n in self.ctx.cfg.text_encoders), FRAMES_UNIT]:
            self.ctx.scheduler.wait_unit(store, unit)  # heads read every text and frame shard, whichever rank wrote it
        dims = {a.name: a.tail for a in store.arrays}
        for t_cfg in self.ctx.cfg.teachers.values():
            head = build_teacher(t_cfg, dims).to(self.ctx.device)
            if schema.inputs_unit(t_cfg.name) in store.units:
                result += self._inputs(store, head)
            head, obtained = self._head(store, head)
            result += obtained
            if head.has_relevance:
                result += self._relevance(store, head)
        return result

    def _inputs(self, store: Store, head: TeacherHead) -> PhaseResult:
        """Arrays stage one prepares for a head (rank 0 writes them whole, then marks every shard)."""
        unit = schema.inputs_unit(head.config.name)
        result = PhaseResult()
        if self.ctx.rank.is_main:
            todo, result.skipped = self.ctx.scheduler.todo(store, unit, all_ranks=True)
            if todo:
                head.write_inputs(store)
                for shard, _, _ in todo:
                    store.mark_done(unit, shard)
            result.done = len(todo)
        self.ctx.scheduler.wait_unit(store, unit)
        return result

    def _head(self, store: Store, head: TeacherHead) -> tuple[TeacherHead, PhaseResult]:
        """The head with its weights: read back when done, else obtained by rank 0 (others wait)."""
        name, unit = head.config.name, schema.head_unit(head.config.name)
        if store.is_done(unit, 0):
            return load_teacher(store, name).to(self.ctx.device), PhaseResult(0, 1)
        if self.ctx.rank.is_main:
            save_head(store, head, self._obtain(store, head))
            store.mark_done(unit, 0)
            return head, PhaseResult(1, 0)
        self.ctx.scheduler.wait(lambda: store.is_done(unit, 0), f"rank 0 to fit teacher {name!r}")
        return load_teacher(store, name).to(self.ctx.device), PhaseResult()

    def _obtain(self, store: Store, head: TeacherHead) -> dict[str, Any]:
        """Fit or load the head's weights; measure it on val and test. Returns its record."""
        splits, device = store_splits(store), self.ctx.device
        val = split_for(store, "val", [head]) if "val" in splits else None
        if head.learns and head.config.checkpoint:
            load_checkpoint(head, head.config.checkpoint)
            record: dict[str, Any] = {"fitted": False, "checkpoint": head.config.checkpoint}
        elif head.learns:
            if "train" not in splits:
                raise TeacherError(f"teacher {head.config.name!r} must be fitted but the store has no train split; give it a checkpoint")
            record = fit_head(head, split_for(store, "train", [head]), val, device, self.ctx.progress)
        else:
            record = {"fitted": False}
        head.eval()
        record["metrics"] = {
            split: teacher_metrics(head, val if split == "val" and val is not None else split_for(store, split, [head]), device) for split in ("val", "test") if split in splits
        }
        if self.ctx.progress:
            shown = ", ".join(f"{k} t2v R1 {m['t2v']['R1']:.1f}" for k, m in record["metrics"].items())
            print(f"teacher {head.config.name} ({head.kind}): {shown}")
        return record

    @torch.no_grad()
    def _relevance(self, store: Store, head: TeacherHead) -> PhaseResult:
        unit = schema.relevance_unit(head.config.name)
        todo, skipped = self.ctx.scheduler.todo(store, unit)
        video_index = store.captions().column("video_index").to_numpy()
        for shard, lo, hi in tqdm(todo, desc=f"relevance {head.config.name}", unit="shard", disable=not self.ctx.progress or not todo):
            text, video = matched_inputs(store, head, lo, hi, video_index, self.ctx.device)
            store.write(schema.relevance(head.config.name), lo, head.relevance(text, video).float().cpu().numpy().astype(np.float16))
            store.mark_done(unit, shard)
        return PhaseResult(len(todo), skipped)


def matched_inputs(store: Store, head: TeacherHead, lo: int, hi: int, video_index: np.ndarray, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Caption rows lo..hi and, row for row, their own videos: the inputs of ``head.relevance``."""
    vids = video_index[lo:hi]
    v0, v1 = int(vids.min()), int(vids.max()) + 1
    text = {k: torch.arange(lo, hi) if k == CAPTION_ROW else torch.from_numpy(store.read(k, slice(lo, hi))) for k in head.text_inputs()}
    video = {k: torch.from_numpy(vids.astype(np.int64)) if k == VIDEO_ROW else torch.from_numpy(store.read(k, slice(v0, v1))[vids - v0]) for k in head.video_inputs()}
    return {k: v.to(device) for k, v in text.items()}, {k: v.to(device) for k, v in video.items()}
