"""PyTorch backbones of the registry: build, load resolved weights, freeze for a strategy.

:class:`BackboneNet` takes uint8 NHWC batches (the image cache as it is), so preprocessing
(scale, resize to the variant's input size, per-channel normalisation) lives in the model and
cannot drift between training, embedding and ``lesionlab predict``.

Imports torch (and torchvision for its backbones): use it only in a torch process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lesionlab.models.backbones import BackboneSpec


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite0/1/2 without its classifier: stem + blocks + head conv, global average pool."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def _architecture(spec: BackboneSpec) -> nn.Module:
    """The ImageNet architecture with its 1000-class classifier (weights are loaded into it as published)."""
    if spec.name.startswith("efficientnet_lite"):
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(spec.name.replace("_", "-"))
    import torchvision

    return getattr(torchvision.models, spec.name)(weights=None)


def _strip_classifier(spec: BackboneSpec, net: nn.Module) -> nn.Module:
    """The pooled-embedding extractor (output width ``spec.features``)."""
    if spec.name.startswith("efficientnet_lite"):
        return _LiteFeatures(net)
    if spec.name.startswith("resnet"):
        net.fc = nn.Identity()
    elif spec.name == "convnext_tiny":
        net.classifier[2] = nn.Identity()  # keep its LayerNorm2d + Flatten
    else:  # efficientnet_b0, mobilenet_v3_large: pool -> flatten -> classifier
        net.classifier = nn.Identity()
    return net


def blocks(spec: BackboneSpec, features: nn.Module) -> list[nn.Module]:
    """The backbone's stages in forward order; ``partial`` fine-tuning trains the last few."""
    net = features.net if isinstance(features, _LiteFeatures) else features
    if spec.name.startswith("efficientnet_lite"):
        return [nn.ModuleList([net._conv_stem, net._bn0]), *net._blocks, nn.ModuleList([net._conv_head, net._bn1])]
    if spec.name.startswith("resnet"):
        return [nn.ModuleList([net.conv1, net.bn1]), net.layer1, net.layer2, net.layer3, net.layer4]
    return list(net.features)  # efficientnet_b0, mobilenet_v3_large, convnext_tiny


def build_features(spec: BackboneSpec, weights_path: str = "") -> nn.Module:
    """The embedding extractor, with the resolved ImageNet weights loaded (strictly) when given."""
    net = _architecture(spec)
    if weights_path:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RuntimeError(f"{weights_path}: not the ImageNet weights of {spec.name} ({err})") from None
    return _strip_classifier(spec, net)


class Standardize(nn.Module):
    """(x - mean) / std with the train split's statistics, frozen into the model (probe heads)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, x):
        return (x.float() - self.mean) / self.std


def make_head(n_features: int, n_classes: int, head: str, hidden: int, dropout: float) -> nn.Module:
    if head == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, n_classes))
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
    )


class BackboneNet(nn.Module):
    """uint8 NHWC images -> class logits: preprocessing, backbone embedding, head."""

    def __init__(self, spec: BackboneSpec, features: nn.Module, head: nn.Module, image_size: int):
        super().__init__()
        self.spec_name, self.image_size = spec.name, image_size
        self.features, self.head = features, head
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self.frozen: list[nn.Module] = []
        self.channels_last = False  # NHWC inputs to the backbone: set by Compute.prepare_model

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.preprocess(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:  # frozen stages keep their ImageNet BatchNorm statistics
            module.eval()
        return self


def apply_strategy(model: BackboneNet, spec: BackboneSpec, strategy: str, trainable_blocks: int) -> None:
    """linear_probe: head only; partial: the last ``trainable_blocks`` stages + head; full: everything."""
    stages = blocks(spec, model.features)
    for p in model.features.parameters():
        p.requires_grad = strategy == "full"
    model.frozen = [] if strategy == "full" else list(stages)
    if strategy == "partial":
        keep = stages[-trainable_blocks:] if trainable_blocks > 0 else []
        for module in keep:
            for p in module.parameters():
                p.requires_grad = True
        model.frozen = stages[: len(stages) - len(keep)]
    for p in model.head.parameters():
        p.requires_grad = True


class _Float32Gradients(torch.autograd.Function):
    """A depthwise convolution whose forward is the one autocast runs (bfloat16 on a CPU that has it) and whose
    backward computes in float32: PyTorch's CPU bfloat16 kernels for the input gradient of a strided depthwise
    convolution and the weight gradient of a 5x5 one are an order of magnitude slower than the float32 ones
    (:mod:`lesionlab.models.compute`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight, bias)
        ctx.conv = (stride, padding, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        stride, padding, dilation = (list(torch.nn.modules.utils._pair(v)) for v in ctx.conv[:3])
        groups = ctx.conv[3]
        low = grad.dtype  # the forward's compute dtype: inputs and weights as the forward saw them
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]]
        # channels-last float32 in: the fastest kernels for every shape measured (a padding module before the
        # convolution may have handed it a contiguous NCHW input, whose kernels are several times slower)
        nhwc = torch.channels_last
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad.float().contiguous(memory_format=nhwc),
            x.to(low).float().contiguous(memory_format=nhwc),
            weight.to(low).float().contiguous(memory_format=nhwc),
            [bias.shape[0]] if bias is not None else None,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            groups,
            mask,
        )
        return _like(gx, x), _like(gw, weight), _like(gb, bias), None, None, None, None


def _like(grad, tensor):
    return None if grad is None else grad.to(tensor.dtype)


class _DepthwiseMode(torch.overrides.TorchFunctionMode):
    """Inside a patched depthwise convolution's forward: its ``conv2d`` call goes through :class:`_Float32Gradients`
    (whatever padding module or ``F.conv2d`` call the convolution class makes around it)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv2d, torch.conv2d):
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            call = dict(zip(names, args), **kwargs)
            call = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1} | call
            x, groups = call["input"], call["groups"]
            if groups > 1 and groups == x.shape[1] and not isinstance(call["padding"], str):
                return _Float32Gradients.apply(*(call[n] for n in names))
        return func(*args, **kwargs)


def _depthwise_forward(self, x):
    if torch.is_grad_enabled() and self.weight.requires_grad:
        with _DepthwiseMode():
            return type(self).forward(self, x)
    return type(self).forward(self, x)  # inference, or frozen: the convolution as it is


def float32_depthwise_gradients(model: nn.Module) -> int:
    """Every trainable depthwise ``Conv2d`` of ``model`` computes its gradients in float32 (forward unchanged;
    frozen ones and inference untouched). Patched per instance: the state dict, and so saved models, stay as they
    are. Returns how many convolutions were patched."""
    import types

    patched = 0
    for module in model.modules():
        depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
        if depthwise and module.weight.requires_grad and "forward" not in vars(module):
            module.forward = types.MethodType(_depthwise_forward, module)
            patched += 1
    return patched


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all, trainable)"""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)``, without its import of ``torch._inductor``
    (about 1 s on the 2-core CPU) when nothing has loaded Inductor yet: the same flag is set in PyTorch's core, and
    Inductor's own ``deterministic`` switch, which the public call also sets, is handed over through
    ``TORCHINDUCTOR_DETERMINISTIC`` (Inductor reads it when it is first imported, so ``torch.compile`` code, should
    any load later, stays deterministic too). What it saves: in the processes that only run models (embeddings,
    Grad-CAM, external scoring, ``lesionlab predict``); a training process loads Inductor anyway, through
    ``torch._dynamo`` at its first optimizer."""
    import os
    import sys

    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1"
    torch._C._set_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int) -> None:
    import os
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic_algorithms()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
