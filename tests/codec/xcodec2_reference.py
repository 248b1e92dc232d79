"""The PyPI `xcodec2` 0.1.5 package as the numerical reference, loaded without its stale pins.

xcodec2 0.1.5 pins torch 2.5 / torchaudio 2.5 and builds w2v-bert-2.0 from the hub. Here (see .ci/extras.sh):
- torchaudio is only imported by one of its modules and never used: it gets an empty stand-in module;
- torchtune is installed without its dependencies, and only its `RotaryPositionalEmbeddings` (the real file
  torchtune/modules/position_embeddings.py) is exposed, because torchtune/__init__ imports datasets etc.;
- the model is assembled from the package's own classes (CodecDecoderVocos, CodecEncoder_Transformer,
  SemanticEncoder, ResidualFSQ) at the checkpoint's dimensions with a locally built w2v-bert, and the package's own
  `XCodec2Model.encode_code` / `decode_code` methods run on it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any


def import_xcodec2() -> Any:
    """Imports xcodec2.modeling_xcodec2 (raises ImportError when the package or its extras are missing)."""
    if "torchaudio" not in sys.modules and importlib.util.find_spec("torchaudio") is None:
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    if "torchtune.modules" not in sys.modules:
        spec = importlib.util.find_spec("torchtune")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("torchtune is not installed (bash .ci/extras.sh installs it)")
        root = Path(next(iter(spec.submodule_search_locations)))
        pkg = types.ModuleType("torchtune")
        pkg.__path__ = [str(root)]
        sys.modules["torchtune"] = pkg
        pe_spec = importlib.util.spec_from_file_location("torchtune.modules.position_embeddings",
                                                         root / "modules" / "position_embeddings.py")
        pe = importlib.util.module_from_spec(pe_spec)
        pe_spec.loader.exec_module(pe)
        mods = types.ModuleType("torchtune.modules")
        mods.RotaryPositionalEmbeddings = pe.RotaryPositionalEmbeddings
        sys.modules["torchtune.modules"] = mods
    import xcodec2.modeling_xcodec2 as modeling

    return modeling


def load_reference(folder: Path) -> Any:
    """The package's XCodec2Model methods bound to package modules sized like the checkpoint in `folder`."""
    import torch
    from safetensors.torch import load_file
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    modeling = import_xcodec2()
    from xcodec2.vq.codec_decoder_vocos import CodecDecoderVocos
    from xcodec2.vq.codec_encoder import CodecEncoder_Transformer
    from xcodec2.vq.module import SemanticEncoder

    from llasa_rt.export.xcodec2_model import w2v_bert_config

    sd = load_file(str(folder / "model.safetensors"))
    dim, vq_dim = sd["fc_post_a.weight"].shape
    depth = len({k.split(".")[3] for k in sd if k.startswith("generator.backbone.transformers.")})
    sem = sd["SemanticEncoder_module.initial_conv.weight"].shape[0]
    ngf = sd["CodecEnc.conv_blocks.0.parametrizations.weight.original1"].shape[0]
    enc_hidden = sd["CodecEnc.conv_final_block.1.parametrizations.weight.original1"].shape[0]

    class Reference(torch.nn.Module):
        encode_code = modeling.XCodec2Model.encode_code
        decode_code = modeling.XCodec2Model.decode_code

        @property
        def device(self) -> torch.device:
            return torch.device("cpu")

    ref = Reference()
    ref.semantic_model = Wav2Vec2BertModel(w2v_bert_config(sd))
    ref.SemanticEncoder_module = SemanticEncoder(sem, sem, sem)
    ref.CodecEnc = CodecEncoder_Transformer(ngf=ngf, hidden_dim=enc_hidden)
    ref.generator = CodecDecoderVocos(hidden_dim=dim, depth=depth, heads=dim // 64, vq_dim=vq_dim)
    ref.fc_prior = torch.nn.Linear(sd["fc_prior.weight"].shape[1], sd["fc_prior.weight"].shape[0])
    ref.fc_post_a = torch.nn.Linear(vq_dim, dim)
    # Same preprocessing values as facebook/w2v-bert-2.0's preprocessor_config.json.
    ref.feature_extractor = SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, padding_value=1.0,
                                                        sampling_rate=16000, stride=2)
    ref.load_state_dict(sd, strict=True)
    ref.semantic_model.config.output_hidden_states = True
    return ref.eval()
