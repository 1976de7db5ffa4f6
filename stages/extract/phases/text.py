"""Stage one, text phase: every text encoder over the caption shards (sentence vectors and,
where a teacher needs them, word features)."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from teachcache.cache import schema
from teachcache.cache.errors import NumericalError
from teachcache.cache.schema import CAPTIONS
from teachcache.cache.store import ArraySpec, Store
from teachcache.stages.extract.phases.base import Phase, PhaseResult


def finite_float16(values: np.ndarray, encoder: str) -> np.ndarray:
    """float16 values, refusing NaN/inf (or values beyond float16) with the encoder's name."""
    out = values.astype(np.float16)
    if not np.isfinite(out).all():
        raise NumericalError(f"text encoder {encoder!r} produced NaN/inf (or values beyond float16) for some captions")
    return out


class TextPhase(Phase):
    name = "text"

    def specs(self, known: dict[str, tuple[int, ...]]) -> list[ArraySpec]:
        specs = []
        for name, t in self.ctx.cfg.text_encoders.items():
            dim, unit = self.ctx.encoders.text(name).dim, schema.text_unit(name)
            specs.append(ArraySpec(schema.text(name), CAPTIONS, (dim,), "float16", unit))
            if t.tokens:
                specs.append(ArraySpec(schema.tokens(name), CAPTIONS, (t.tokens, dim), "float16", unit))
                specs.append(ArraySpec(schema.token_mask(name), CAPTIONS, (t.tokens,), "bool", unit))
        return specs

    def run(self, store: Store) -> PhaseResult:
        texts = store.captions().column("text").to_pylist()
        result = PhaseResult()
        for name, t in self.ctx.cfg.text_encoders.items():
            todo, skipped = self.ctx.scheduler.todo(store, schema.text_unit(name))
            result.skipped += skipped
            for shard, lo, hi in tqdm(todo, desc=f"text {name}", unit="shard", disable=not self.ctx.progress or not todo):
                store.write(schema.text(name), lo, self._sentences(name, texts[lo:hi]))
                if t.tokens:
                    words, mask = self.ctx.encoders.text(name).encode_tokens(texts[lo:hi], t.tokens)
                    store.write(schema.tokens(name), lo, finite_float16(words, name))
                    store.write(schema.token_mask(name), lo, mask)
                store.mark_done(schema.text_unit(name), shard)
                result.done += 1
        return result

    def _sentences(self, name: str, texts: list[str]) -> np.ndarray:
        """Encode each distinct sentence once; refuse non-finite output."""
        unique, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
        return finite_float16(self.ctx.encoders.text(name).encode([str(u) for u in unique])[inverse], name)
