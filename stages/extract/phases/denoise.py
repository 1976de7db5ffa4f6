"""Stage one, denoising phase (TeachText, docs/method.md section 6): per training caption, the
rank and score of its own video among all training videos under the plain mean of the
teachers' logits, so stage two picks K without running a teacher again."""

from __future__ import annotations

import numpy as np

from teachcache.cache.schema import CAPTION_ROW, CAPTIONS, DENOISE_RANK, DENOISE_SCORE, DENOISE_UNIT
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.common.data import store_splits
from teachcache.stages.common.device import cpu_threads
from teachcache.stages.extract.phases.base import Phase, PhaseResult
from teachcache.stages.teachers.fit import ensemble_ranks, split_for
from teachcache.stages.teachers.heads import load_teacher


class DenoisePhase(Phase):
    name = "denoise"

    def specs(self, known: dict[str, tuple[int, ...]]) -> list[ArraySpec]:
        if not self.ctx.cfg.teachers:
            return []
        return [ArraySpec(DENOISE_RANK, CAPTIONS, (), "int32", DENOISE_UNIT), ArraySpec(DENOISE_SCORE, CAPTIONS, (), "float32", DENOISE_UNIT)]

    def run(self, store: Store) -> PhaseResult:
        if not self.ctx.cfg.teachers or not self.ctx.rank.is_main:
            return PhaseResult()
        todo, skipped = self.ctx.scheduler.todo(store, DENOISE_UNIT, all_ranks=True)
        if not todo:
            return PhaseResult(0, skipped)
        n = store.num_rows(CAPTIONS)
        ranks, scores = np.full(n, -1, np.int32), np.full(n, np.nan, np.float32)
        if "train" in store_splits(store):
            names = self.ctx.cfg.denoise_teachers or list(self.ctx.cfg.teachers)
            heads = [load_teacher(store, name).to(self.ctx.device) for name in names]
            train = split_for(store, "train", heads)
            rows = train.caption_arrays[CAPTION_ROW].numpy()
            with cpu_threads(self.ctx.device):  # the same bits at any core count
                ranks[rows], scores[rows] = ensemble_ranks(heads, train, self.ctx.device)
        store.write(DENOISE_RANK, 0, ranks)
        store.write(DENOISE_SCORE, 0, scores)
        for shard, _, _ in todo:
            store.mark_done(DENOISE_UNIT, shard)
        return PhaseResult(len(todo), skipped)
