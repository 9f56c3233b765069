"""A PyTorch model adapter that counts every query, and a small Digits model to attack.

torch is an optional extra (``pip install 'mlwarden[torch]'``): nothing here imports it until
an adapter is built or a model trained, so ``import mlwarden.models`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from mlwarden.errors import DataError, ModelError, ParameterError, QueryBudgetExceeded
from mlwarden.models._adapter import finite_probabilities

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DIGITS_INPUT_SCALE",
    "DigitsSplit",
    "TorchAdapter",
    "load_digits_split",
    "require_torch",
    "train_digits_model",
]

_INSTALL_HINT = "pip install 'mlwarden[torch]'"
#: Digits pixels are 0..16; models trained on :func:`load_digits_split` see them times this.
DIGITS_INPUT_SCALE = 1.0 / 16.0


def require_torch() -> None:
    """Fail with an actionable message when the optional PyTorch dependency is missing.

    Raises
    ------
    ModelError
        torch cannot be imported; the message names ``pip install 'mlwarden[torch]'``.
    """
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"this feature needs PyTorch, which is not installed: {_INSTALL_HINT}"
        ) from exc


def _py(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar, anything else unchanged."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


class TorchAdapter:
    """Wraps a ``torch.nn.Module`` that maps a batch of inputs to class logits.

    The adapter offers the same interface as :class:`~mlwarden.models.SklearnAdapter`
    (``predict_proba``, ``predict``, ``classes_``, ``queries``), the white-box
    ``loss_gradient``, and tensor-level ``logits`` for attacks that stay on tensors.
    Every row sent through the network counts as one query, including the rows whose
    gradient is taken. With a ``budget``, a call that would exceed it is refused whole with
    :class:`~mlwarden.errors.QueryBudgetExceeded` before the network runs.

    The module is moved to ``device`` and put in eval mode (dropout off, batch-norm frozen),
    which is how a shipped model answers. Inputs are cast to the dtype of the module's first
    parameter (float32 when it has none).

    Parameters
    ----------
    module
        The network; its output for ``n`` rows must have shape ``(n, len(classes))``.
    classes
        Class labels in the order of the logit columns.
    budget
        Most rows the adapter will ever send to the network; None: unlimited.
    device
        Where the module and the inputs live (``"cpu"``, ``"cuda"``...).
    batch_size
        Rows per forward pass in ``predict_proba`` and ``loss_gradient``.
    feature_names
        The column order the network reads a DataFrame in; None: the frame's own order.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        classes: Any,
        budget: int | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 1024,
        feature_names: list[str] | None = None,
    ) -> None:
        require_torch()
        import numpy as np
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if budget is not None and budget < 0:
            raise ParameterError(f"budget must be a non-negative number of queries, got {budget}")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        labels = np.asarray(classes)
        if labels.ndim != 1 or len(labels) < 2:
            raise ModelError(f"classes must be a list of at least two labels, got {classes!r}")
        if len(np.unique(labels)) != len(labels):
            raise ModelError(f"classes must be distinct, got {classes!r}")
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        first = next(iter(self.module.parameters()), None)
        self.dtype: torch.dtype = first.dtype if first is not None else torch.float32
        self.budget = budget
        self.batch_size = batch_size
        self.feature_names = feature_names
        self._classes = labels
        self._sorter = np.argsort(labels, kind="stable")
        self._queries = 0

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of ``predict_proba``."""
        return self._classes

    @property
    def queries(self) -> int:
        """Rows sent through the network so far."""
        return self._queries

    @property
    def remaining_queries(self) -> int | None:
        """Rows the budget still allows; None when there is no budget."""
        return None if self.budget is None else self.budget - self._queries

    def _check(self, n: int) -> None:
        """Refuse, before anything runs, a call of ``n`` rows that would exceed the budget."""
        if self.budget is not None and self._queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.budget} rows would be exceeded: "
                f"{self._queries} spent, {n} asked"
            )

    def _spend(self, n: int) -> None:
        self._check(n)
        self._queries += n

    def class_index(self, y: Any) -> np.ndarray:
        """Column index of each label in ``y``; raises DataError on a label not in classes_."""
        import numpy as np

        labels = np.asarray(y)
        if labels.ndim != 1:
            raise DataError(f"labels must be one-dimensional, got shape {labels.shape}")
        try:
            pos = np.searchsorted(self._classes, labels, sorter=self._sorter)
        except TypeError as exc:
            raise DataError(f"labels are not comparable with classes {self._classes!r}") from exc
        pos = np.minimum(pos, len(self._classes) - 1)
        index = self._sorter[pos]
        unknown = self._classes[index] != labels
        if np.any(unknown):
            bad = sorted({_py(v) for v in labels[unknown]}, key=repr)[:5]
            raise DataError(f"labels {bad} are not among the model's classes {list(self._classes)}")
        return np.asarray(index, dtype=np.int64)

    def as_tensor(self, X: Any) -> torch.Tensor:
        """Inputs as a tensor on the adapter's device and dtype (no query is spent)."""
        import numpy as np
        import torch

        if isinstance(X, torch.Tensor):
            return X.detach().to(device=self.device, dtype=self.dtype)
        if self.feature_names is not None and hasattr(X, "columns"):
            X = X[self.feature_names]
        array = np.asarray(X)
        if array.dtype == object or array.ndim < 1:
            raise DataError("inputs must be a numeric array with one row per example")
        if not array.flags.writeable:  # pandas hands out read-only views; torch wants to own
            array = array.copy()
        return torch.as_tensor(array).to(device=self.device, dtype=self.dtype)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The network's logits for a batch already on the device; counts ``len(x)`` queries.

        Autograd follows the caller's grad mode, so an attack can differentiate through it.
        The call is refused whole, before the network runs, if it would exceed the budget.
        """
        import torch

        self._spend(len(x))
        try:
            out: torch.Tensor = self.module(x)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:  # torch names the shapes it expected
            raise DataError(f"the module refused inputs of shape {tuple(x.shape)}: {exc}") from exc
        if out.ndim != 2 or out.shape[1] != len(self._classes):
            raise ModelError(
                f"the module returned shape {tuple(out.shape)}; expected "
                f"({len(x)}, {len(self._classes)}) logits"
            )
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax class probabilities, one row per input row (numpy in, numpy out)."""
        import numpy as np
        import torch

        x = self.as_tensor(X)
        self._check(len(x))  # refused whole before anything runs; logits() counts the rows
        parts = []
        with torch.no_grad():
            for chunk in torch.split(x, self.batch_size):
                parts.append(torch.softmax(self.logits(chunk), dim=1).cpu())
        if not parts:
            return np.zeros((0, len(self._classes)))
        return finite_probabilities(torch.cat(parts).to(torch.float64).numpy())

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        import numpy as np

        proba = self.predict_proba(X)
        return np.asarray(self._classes[np.argmax(proba, axis=1)])

    def loss_gradient(self, X: Any, y: Any) -> np.ndarray:
        """Gradient of each row's own cross-entropy loss with respect to that row.

        One query per row (the forward pass the gradient needs). The result has the shape
        of ``X`` and the adapter's dtype, as a numpy array.
        """
        import torch
        import torch.nn.functional as F

        x = self.as_tensor(X)
        target = torch.as_tensor(self.class_index(y), device=self.device)
        if len(target) != len(x):
            raise DataError(f"{len(x)} input rows but {len(target)} labels")
        self._check(len(x))
        grads = []
        with torch.enable_grad():
            for xb, tb in zip(
                torch.split(x, self.batch_size), torch.split(target, self.batch_size), strict=True
            ):
                xb = xb.clone().requires_grad_(True)
                loss = F.cross_entropy(self.logits(xb), tb, reduction="sum")
                (grad,) = torch.autograd.grad(loss, xb)
                grads.append(grad.detach().cpu())
        if not grads:
            return x.cpu().numpy()
        return torch.cat(grads).numpy()


class DigitsSplit(NamedTuple):
    """Digits pixels scaled to [0, 1] (float32) and labels 0..9, split for training and test."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_size: float = 0.3, seed: int = 0) -> DigitsSplit:
    """The bundled Digits table (8x8 images) as a stratified train/test split.

    Pixels (0..16) are divided by 16 so an attack's epsilon reads on a [0, 1] scale.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from mlwarden import data as datasets

    d = datasets.load("digits")
    X = (d.X.to_numpy(dtype=np.float64) * DIGITS_INPUT_SCALE).astype(np.float32)
    y = d.y.to_numpy(dtype=np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    return DigitsSplit(X_tr, X_te, y_tr, y_te)


def _digits_module(kind: Literal["mlp", "cnn"], hidden: int) -> torch.nn.Module:
    from torch import nn

    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    if kind == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )
    raise ParameterError(f"kind must be 'mlp' or 'cnn', got {kind!r}")


def _pgd_examples(
    module: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, eps: float, steps: int
) -> torch.Tensor:
    """L-infinity PGD examples with a random start, for adversarial training (not counted as
    queries: training is the defender's own use of the model)."""
    import torch
    import torch.nn.functional as F

    step = 2.5 * eps / steps
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(module(adv), t)
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + step * grad.sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0.0, 1.0)
    return adv.detach()


def train_digits_model(
    X: Any = None,
    y: Any = None,
    *,
    kind: Literal["mlp", "cnn"] = "mlp",
    seed: int = 0,
    epochs: int | None = None,
    hidden: int = 128,
    lr: float = 3e-3,
    batch_size: int = 64,
    adversarial_eps: float | None = None,
    adversarial_steps: int = 7,
) -> torch.nn.Module:
    """Train a small MLP (64-hidden-10) or CNN on Digits, deterministically, in seconds on CPU.

    With ``adversarial_eps`` it is PGD adversarial training (Madry et al., ICLR 2018): each
    batch is replaced by L-infinity PGD examples (random start, ``adversarial_steps`` steps of
    2.5 * eps / steps) against the current weights, so the model learns to resist them.

    A demo victim for the white-box attacks: inputs are the 64 pixels scaled to [0, 1] (flat,
    also for the CNN, which reshapes to 1x8x8 itself), outputs are the logits of digits 0..9.
    The global torch random state and deterministic-algorithms flag are restored afterwards.

    Parameters
    ----------
    X, y
        Training pixels (n, 64) in [0, 1] and labels 0..9; None: the training part of
        :func:`load_digits_split` with its defaults.
    kind
        ``"mlp"`` or ``"cnn"``.
    seed
        Seeds the weight initialisation and the shuffling.
    epochs
        Passes over the data; None: 40 for the MLP, 25 for the CNN.
    adversarial_eps, adversarial_steps
        PGD adversarial training radius (on [0, 1] pixels) and steps; None trains normally.

    Returns
    -------
    torch.nn.Module
        The trained network in eval mode, on CPU; wrap it with
        ``TorchAdapter(module, classes=range(10))``.
    """
    require_torch()
    import numpy as np
    import torch
    import torch.nn.functional as F

    if (X is None) != (y is None):
        raise ParameterError("give both X and y, or neither")
    if X is None:
        split = load_digits_split()
        X, y = split.X_train, split.y_train
    x_all = torch.as_tensor(np.asarray(X, dtype=np.float32))
    t_all = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if x_all.ndim != 2 or x_all.shape[1] != 64:
        raise DataError(f"expected Digits pixels of shape (n, 64), got {tuple(x_all.shape)}")
    n_epochs = epochs if epochs is not None else (40 if kind == "mlp" else 25)

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            module = _digits_module(kind, hidden)
            generator = torch.Generator().manual_seed(seed)
            optimiser = torch.optim.Adam(module.parameters(), lr=lr)
            module.train()
            for _ in range(n_epochs):
                order = torch.randperm(len(x_all), generator=generator)
                for batch in torch.split(order, batch_size):
                    inputs = x_all[batch]
                    if adversarial_eps is not None:
                        inputs = _pgd_examples(
                            module, inputs, t_all[batch], adversarial_eps, adversarial_steps
                        )
                    optimiser.zero_grad()
                    loss = F.cross_entropy(module(inputs), t_all[batch])
                    torch.autograd.backward(loss)
                    optimiser.step()
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
    return module.eval()
