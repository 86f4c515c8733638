"""Architecture configuration of the mask transformer (backbone, pixel decoder, transformer decoder).

Only architecture lives here; loss weights and training settings belong to the training recipes.
Defaults are the Mask2Former / Mask2Anomaly Cityscapes settings (R50, 100 queries, 9 decoder layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

ATTENTION_MODES = ("cross", "masked", "global_masked")
GMA_WEIGHTS = ("separate", "shared")
BACKBONES = (
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "swin",
    "swin_tiny",
    "swin_small",
    "swin_base",
    "swin_large",
    "efficientnet_lite0",
)


@dataclass(frozen=True)
class SwinConfig:
    """Swin Transformer hyper-parameters (names as in ``transformers.SwinConfig``).

    The defaults are Swin-T; Swin-S/B/L differ in ``embed_dim``, ``depths`` and ``num_heads``.
    """

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.3
    layer_norm_eps: float = 1e-5
    use_absolute_embeddings: bool = False
    image_size: tuple[int, ...] = (224, 224)
    """``(H, W)`` the absolute position embeddings were made for (used only with them)."""


SWIN_PRESETS: dict[str, SwinConfig] = {
    "swin_tiny": SwinConfig(),
    "swin_small": SwinConfig(depths=(2, 2, 18, 2)),
    "swin_base": SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12),
    "swin_large": SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
}


@dataclass(frozen=True)
class ResNetConfig:
    """ResNet hyper-parameters (names as in ``transformers.ResNetConfig``); the defaults are ResNet-50.

    Attributes:
        layer_type: ``"bottleneck"`` (1x1, 3x3, 1x1; inner width a quarter of the output) or
            ``"basic"`` (two 3x3).
        depths: blocks per stage (four stages).
        hidden_sizes: output channels of each stage.
        embedding_size: channels of the 7x7 stem.
        downsample_in_first_stage: the first stage halves the resolution too (strides 8..64).
        downsample_in_bottleneck: a bottleneck's stride on its first 1x1 convolution rather than
            on the 3x3 one (torchvision and Mask2Former put it on the 3x3).
    """

    layer_type: str = "bottleneck"
    depths: tuple[int, ...] = (3, 4, 6, 3)
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    embedding_size: int = 64
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False

    def __post_init__(self) -> None:
        if self.layer_type not in ("bottleneck", "basic"):
            raise ValueError(f"ResNet layer_type must be 'bottleneck' or 'basic', got {self.layer_type!r}")
        if len(self.depths) != 4 or len(self.hidden_sizes) != 4:
            raise ValueError(f"ResNet needs four stages, got depths {self.depths} and hidden_sizes {self.hidden_sizes}")
        if min(self.depths) < 1 or min(self.hidden_sizes) < 1 or self.embedding_size < 1:
            raise ValueError("ResNet depths, hidden_sizes and embedding_size must be positive")
        if self.layer_type == "bottleneck" and min(self.hidden_sizes) < 4:
            raise ValueError(f"bottleneck hidden_sizes must be at least 4, got {self.hidden_sizes}")


RESNET_PRESETS: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet34": ResNetConfig("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50": ResNetConfig(),
    "resnet101": ResNetConfig(depths=(3, 4, 23, 3)),
}


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone to build and how.

    Attributes:
        name: one of ``resnet`` (with ``resnet`` given), ``resnet18``, ``resnet34``, ``resnet50``,
            ``resnet101``, ``swin`` (with ``swin`` given), ``swin_tiny``, ``swin_small``,
            ``swin_base``, ``swin_large`` (Mask2Former's Swin-T/S/B/L, windows 7, 7, 12, 12),
            ``efficientnet_lite0``.
        resnet: ResNet hyper-parameters (filled in from the preset for ``resnet<N>`` names).
        swin: Swin hyper-parameters (filled in from the preset for ``swin_*`` names).
        freeze: keep every backbone weight fixed during training (the paper freezes its R50).
        pretrained: ``None`` (random init), a path to a weight file (ResNet: torchvision or
            detectron2 layout), or ``"imagenet"`` for EfficientNet-Lite0's packaged weights.
    """

    name: str = "resnet50"
    resnet: ResNetConfig | None = None
    swin: SwinConfig | None = None
    freeze: bool = False
    pretrained: str | None = None

    def __post_init__(self) -> None:
        if self.name not in BACKBONES:
            raise ValueError(f"unknown backbone {self.name!r}; expected one of {', '.join(BACKBONES)}")
        if self.name == "resnet" and self.resnet is None:
            object.__setattr__(self, "resnet", ResNetConfig())
        if self.name in RESNET_PRESETS and self.resnet is None:
            object.__setattr__(self, "resnet", RESNET_PRESETS[self.name])
        if self.name == "swin" and self.swin is None:
            object.__setattr__(self, "swin", SwinConfig())
        if self.name in SWIN_PRESETS and self.swin is None:
            object.__setattr__(self, "swin", SWIN_PRESETS[self.name])


@dataclass(frozen=True)
class ModelConfig:
    """The whole mask transformer.

    Attributes:
        num_classes: K, the number of known classes (the class head has K + 1 outputs, the last
            being "no object").
        class_names: optional names of the K classes.
        num_queries: N, object queries.
        hidden_dim: transformer decoder width.
        num_heads: attention heads, in the decoder and in the deformable encoder.
        dim_feedforward: decoder FFN width.
        num_decoder_layers: decoder layers (Mask2Former's ``DEC_LAYERS - 1``; a prediction is made
            after the query initialisation and after every layer, so there are this + 1 predictions).
        pre_norm: pre-LayerNorm decoder layers instead of post-norm.
        enforce_input_projection: project decoder inputs even when widths already agree.
        conv_dim: pixel decoder width.
        mask_dim: width of the per-pixel mask embeddings.
        encoder_layers: deformable-attention encoder layers in the pixel decoder.
        encoder_feedforward_dim: encoder FFN width.
        encoder_points: sampling points per head and level in deformable attention.
        common_stride: stride of the mask features (4).
        attention: ``"cross"`` (plain cross-attention), ``"masked"`` (Mask2Former) or
            ``"global_masked"`` (Mask2Anomaly's GMA).
        gma_weights: ``"separate"`` (two attention modules, foreground and background, as in the
            official code and its checkpoints) or ``"shared"`` (one module used twice, Eq. 8).
        dataset_head: add DenseHybrid's dataset-posterior head on the mask features (paper 001).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_classes: int = 19
    class_names: tuple[str, ...] | None = None
    num_queries: int = 100
    hidden_dim: int = 256
    num_heads: int = 8
    dim_feedforward: int = 2048
    num_decoder_layers: int = 9
    pre_norm: bool = False
    enforce_input_projection: bool = False
    conv_dim: int = 256
    mask_dim: int = 256
    encoder_layers: int = 6
    encoder_feedforward_dim: int = 1024
    encoder_points: int = 4
    common_stride: int = 4
    attention: str = "masked"
    gma_weights: str = "separate"
    dataset_head: bool = False

    def __post_init__(self) -> None:
        positive = ("num_classes", "num_queries", "hidden_dim", "num_heads", "dim_feedforward", "conv_dim", "mask_dim")
        positive += ("encoder_feedforward_dim", "encoder_points", "common_stride")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("num_decoder_layers", "encoder_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        if self.gma_weights not in GMA_WEIGHTS:
            raise ValueError(f"gma_weights must be one of {GMA_WEIGHTS}, got {self.gma_weights!r}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names but num_classes is {self.num_classes}")
        for name in ("hidden_dim", "conv_dim"):
            width = getattr(self, name)
            if width % self.num_heads:
                raise ValueError(f"{name}={width} is not divisible by num_heads={self.num_heads}")
        if self.conv_dim % 32:
            raise ValueError(f"conv_dim={self.conv_dim} must be a multiple of 32 (GroupNorm with 32 groups)")

    def with_attention(self, attention: str) -> ModelConfig:
        """The same architecture with another decoder attention mode."""
        return replace(self, attention=attention)
