"""Torch classifiers saved with their architecture: safetensors weights, the layers as JSON.

A state dict alone cannot run (the network's code is missing). Saved this way, the layer list
(from a small allowlist of torch layers), the class labels and the input scaling travel in the
safetensors metadata, so the model can be rebuilt, checked tensor by tensor, audited and
served without pickle or user code. ``mlwarden import`` keeps such a file as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlwarden.errors import ModelError
from mlwarden.models._safetensors import header, load_weights, read_config, save_module

if TYPE_CHECKING:
    import torch

    from mlwarden.models._torch import TorchAdapter

#: Media type of a registered torch classifier: safetensors weights, architecture in metadata.
TORCH_MEDIA_TYPE = "application/vnd.mlwarden.torch+safetensors"
#: Saved-model format name and version, written in the safetensors metadata.
FORMAT = "mlwarden.torch_classifier"
FORMAT_VERSION = 1

_Layer = Literal[
    "linear", "relu", "tanh", "sigmoid", "gelu", "dropout", "flatten", "unflatten", "conv2d",
    "maxpool2d", "batchnorm1d",
]  # fmt: skip


class Layer(BaseModel):
    """One layer: its kind (a torch layer on the allowlist) and the integer arguments it takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: _Layer
    args: list[Annotated[int, Field(ge=0, le=1 << 20)]] = []
    kwargs: dict[
        Literal["padding", "stride", "kernel_size"], Annotated[int, Field(ge=0, le=64)]
    ] = {}


class TorchClassifierConfig(BaseModel):
    """How to rebuild the network: layers in order, class labels, and the input scaling.

    ``input_scale`` multiplies the served columns before the first layer (Digits pixels 0..16
    become 0..1 with 1/16): the scaling is part of the model, not of whoever serves it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    layers: list[Layer] = Field(min_length=1, max_length=64)
    classes: list[str | int] = Field(min_length=2)
    n_features: int = Field(ge=1)
    input_scale: float = Field(1.0, gt=0.0, allow_inf_nan=False)


def _module(layer: Layer) -> torch.nn.Module:
    from torch import nn

    kinds: dict[str, Any] = {
        "linear": nn.Linear,
        "conv2d": nn.Conv2d,
        "maxpool2d": nn.MaxPool2d,
        "unflatten": lambda *size: nn.Unflatten(1, size),
        "batchnorm1d": nn.BatchNorm1d,
        "flatten": nn.Flatten,
        "dropout": nn.Dropout,
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
    }
    try:
        built: torch.nn.Module = kinds[layer.kind](*layer.args, **layer.kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"layer {layer.kind} cannot be built from {layer.args} {layer.kwargs}: {exc}"
        ) from None
    return built


def _scaled(module: torch.nn.Sequential, factor: float) -> torch.nn.Sequential:
    """``module`` with the recorded input scaling in front (sharing its layers)."""
    from torch import nn

    class Scale(nn.Module):
        """Multiplies the input by the recorded scale (no weights: no tensor in the file)."""

        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.factor

    return nn.Sequential(Scale(factor), *module)


def _square(value: Any) -> int:
    """One integer for a square kernel, padding or stride (a string or rectangle refused)."""
    sizes = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, int) for v in sizes) or len(set(sizes)) != 1:
        raise ModelError(f"only square integer sizes can be recorded, got {value!r}")
    return int(sizes[0])


def layers_of(module: torch.nn.Sequential) -> list[Layer]:
    """The recorded form of a ``nn.Sequential`` of allowlisted layers (others refused)."""
    from torch import nn

    out: list[Layer] = []
    for child in module:
        match child:
            case nn.Linear():
                out.append(Layer(kind="linear", args=[child.in_features, child.out_features]))
            case nn.Conv2d():
                out.append(
                    Layer(
                        kind="conv2d",
                        args=[child.in_channels, child.out_channels],
                        kwargs={
                            "kernel_size": _square(child.kernel_size),
                            "padding": _square(child.padding),
                            "stride": _square(child.stride),
                        },
                    )
                )
            case nn.MaxPool2d():
                out.append(Layer(kind="maxpool2d", args=[_square(child.kernel_size)]))
            case nn.Unflatten():
                out.append(Layer(kind="unflatten", args=list(child.unflattened_size)))
            case nn.BatchNorm1d():
                out.append(Layer(kind="batchnorm1d", args=[child.num_features]))
            case nn.Flatten() | nn.Dropout() | nn.ReLU() | nn.Tanh() | nn.GELU() | nn.Sigmoid():
                out.append(Layer(kind=type(child).__name__.lower()))  # type: ignore[arg-type]
            case _:
                raise ModelError(
                    f"{type(child).__name__} is not a layer mlwarden can record; expected a "
                    "nn.Sequential of Linear, Conv2d, MaxPool2d, Unflatten, Flatten, BatchNorm1d, "
                    "Dropout and ReLU/Tanh/GELU/Sigmoid layers, or export the model to ONNX"
                )
    return out


def save_torch_classifier(
    module: torch.nn.Sequential, classes: list[Any], n_features: int, input_scale: float = 1.0
) -> bytes:
    """``module``'s weights with its architecture, classes and input scaling, as safetensors.

    ``module`` must be a ``nn.Sequential`` of allowlisted layers mapping ``n_features``
    columns (times ``input_scale``) to one logit per class.
    """
    config = TorchClassifierConfig(
        layers=layers_of(module),
        classes=[c.item() if hasattr(c, "item") else c for c in classes],
        n_features=n_features,
        input_scale=input_scale,
    )
    data = save_module(module, config, FORMAT, FORMAT_VERSION)
    load_torch_classifier(data)  # what saving promises: it loads back and answers per class
    return data


def is_torch_classifier(data: bytes) -> bool:
    """Whether safetensors ``data`` says it holds a saved torch classifier (by its metadata)."""
    meta = header(data).get("__metadata__") or {}
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def load_torch_classifier(data: bytes) -> tuple[torch.nn.Sequential, TorchClassifierConfig]:
    """The network and its config, rebuilt from the recorded layers and checked weights.

    Raises ``ModelError`` for another format or version, an invalid config, or tensors that do
    not fit the layers; nothing is unpickled.
    """
    import torch

    config = read_config(data, FORMAT, FORMAT_VERSION, TorchClassifierConfig, "torch classifier")
    layers = torch.nn.Sequential(*(_module(layer) for layer in config.layers))
    load_weights(data, layers, "torch classifier")
    module = _scaled(layers, config.input_scale)
    try:
        with torch.no_grad():
            out = module.eval()(torch.zeros(1, config.n_features))
    except RuntimeError as exc:  # torch names the shapes that do not fit
        raise ModelError(
            f"the torch classifier's layers do not take {config.n_features} columns: {exc}"
        ) from None
    if tuple(out.shape) != (1, len(config.classes)):
        raise ModelError(
            f"the torch classifier maps {config.n_features} columns to shape {tuple(out.shape)}; "
            f"expected one logit per class ({len(config.classes)})"
        )
    return module, config


def torch_classifier_adapter(
    data: bytes, budget: int | None = None, feature_names: list[str] | None = None
) -> TorchAdapter:
    """The adapter of saved torch classifier bytes (raw columns in, scaled by the model);
    a frame's columns are read in ``feature_names`` order (None: as they come)."""
    from mlwarden.models._torch import TorchAdapter

    module, config = load_torch_classifier(data)
    return TorchAdapter(module, config.classes, budget=budget, feature_names=feature_names)
