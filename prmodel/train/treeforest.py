"""Predictions of saved XGBoost tree ensembles with numpy alone, so estimates need no xgboost.

``import xgboost`` pulls in scipy and scikit-learn and costs more than a second, while
``prmodel estimate`` only needs predictions of models that are already trained.
:class:`TreeForest` reads the model files :mod:`prmodel.train.artifacts` writes (XGBoost's
UBJ, or its JSON) and walks every tree for every row at once. It reproduces
``XGBRegressor.predict`` bit for bit for what prmodel trains: a ``gbtree`` booster with an
identity-link regression objective, one output, numerical splits. Inputs are cast to
float32, a split sends a row left when ``x < threshold``, a missing value (NaN) follows the
node's default direction, and leaf values are added to ``base_score`` in float32, tree by
tree, in the booster's order. Anything else (dart, gblinear, categorical splits, several
outputs or classes, a link function) is refused with :class:`TreeForestError`, so the
caller can fall back to xgboost.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from prmodel.errors import PrmodelError

IDENTITY_OBJECTIVES: frozenset[str] = frozenset(
    {
        "reg:squarederror",
        "reg:squaredlogerror",
        "reg:pseudohubererror",
        "reg:absoluteerror",
        "reg:quantileerror",
    }
)
"""Objectives whose prediction is the raw margin plus ``base_score`` (no link function)."""

# Rows are walked in blocks of at most this many (row, tree) pairs, so that predicting a
# large test set does not build work arrays of gigabytes.
_BLOCK_ELEMENTS = 1 << 20


class TreeForestError(PrmodelError, ValueError):
    """A model file this evaluator cannot read or does not support (one sentence says why)."""


@dataclass(frozen=True, eq=False)
class TreeForest:
    """A gbtree ensemble flattened into node arrays, evaluated for many rows at once.

    Node ``i`` of the flat arrays belongs to one tree; ``roots[t]`` is tree ``t``'s root.
    Leaves point to themselves as both children, so a walk of ``max_depth`` steps ends on a
    leaf whatever the path length.

    Attributes:
        n_features: Number of input columns the model takes.
        base_score: The intercept (float32) every prediction starts from.
        best_iteration: The early-stopping round recorded with the model, if any;
            :meth:`predict` then uses the trees up to it, as ``XGBRegressor.predict`` does.
        iteration_indptr: Tree index bounds of each boosting round (rounds + 1 entries).
        roots: Flat index of each tree's root.
        left: Flat index of each node's left child (itself for a leaf).
        right: Flat index of each node's right child (itself for a leaf).
        feature: Split feature of each node (0 for a leaf).
        threshold: Split threshold of each node (float32).
        default_left: Whether a missing value goes left at each node.
        leaf_value: Value of each leaf (0 for an inner node).
        max_depth: Longest root-to-leaf path over all trees, in edges.
    """

    n_features: int
    base_score: np.float32
    best_iteration: int | None
    iteration_indptr: npt.NDArray[np.int64]
    roots: npt.NDArray[np.int64]
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    feature: npt.NDArray[np.int64]
    threshold: npt.NDArray[np.float32]
    default_left: npt.NDArray[np.bool_]
    leaf_value: npt.NDArray[np.float32]
    max_depth: int

    @classmethod
    def load(cls, path: str | Path) -> TreeForest:
        """Read an XGBoost model file (UBJ or JSON, told apart by content).

        Args:
            path: A file written by ``XGBRegressor.save_model`` / ``Booster.save_model``.

        Raises:
            TreeForestError: the file is missing, unreadable, or holds a model this
                evaluator does not support.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TreeForestError(f"model file {path} cannot be read ({exc.strerror})") from None
        document = _parse_document(data, path)
        try:
            return _forest_from_document(document, path)
        except TreeForestError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TreeForestError(
                f"model file {path} is not a complete XGBoost model ({type(exc).__name__}: {exc})"
            ) from None

    @property
    def n_features_in_(self) -> int:
        """Alias of :attr:`n_features`, so the forest can stand in for ``XGBRegressor``."""
        return self.n_features

    @property
    def n_trees(self) -> int:
        """Number of trees in the ensemble."""
        return len(self.roots)

    def predict(
        self,
        X: npt.ArrayLike,
        *,
        iteration_range: tuple[int, int] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Predictions for the rows of ``X``, as ``XGBRegressor.predict`` gives them.

        Args:
            X: A 2-D array of ``n_features`` columns; NaN marks a missing value.
            iteration_range: Boosting rounds ``[begin, end)`` to use; ``None`` or an end of 0
                means up to :attr:`best_iteration` where the model has one, else all.

        Returns:
            One float32 prediction per row.

        Raises:
            TreeForestError: ``X`` is not 2-D with ``n_features`` columns, or the range is
                outside the model's rounds.
        """
        rows = self._checked_rows(X)
        first, last = self._tree_span(iteration_range)
        if rows.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        roots = self.roots[first:last]
        # Blocks of rows keep the (rows, trees) work arrays near 8 MiB each.
        block = max(1, _BLOCK_ELEMENTS // max(len(roots), 1))
        return np.concatenate(
            [self._sums(rows[i : i + block], roots) for i in range(0, rows.shape[0], block)]
        )

    def __repr__(self) -> str:
        return (
            f"TreeForest(n_features={self.n_features}, n_trees={self.n_trees}, "
            f"max_depth={self.max_depth}, base_score={float(self.base_score):g}, "
            f"best_iteration={self.best_iteration})"
        )

    def _checked_rows(self, X: npt.ArrayLike) -> npt.NDArray[np.float32]:
        rows = np.asarray(X, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise TreeForestError(
                f"the tree model takes rows of {self.n_features} features, not an array of "
                f"shape {rows.shape}"
            )
        return rows

    def _tree_span(self, iteration_range: tuple[int, int] | None) -> tuple[int, int]:
        rounds = len(self.iteration_indptr) - 1
        begin, end = iteration_range if iteration_range is not None else (0, 0)
        if end == 0:
            end = rounds if self.best_iteration is None else self.best_iteration + 1
        if not 0 <= begin <= end <= rounds:
            raise TreeForestError(
                f"iteration range ({begin}, {end}) is outside the model's {rounds} rounds"
            )
        return int(self.iteration_indptr[begin]), int(self.iteration_indptr[end])

    def _sums(
        self, rows: npt.NDArray[np.float32], roots: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        # XGBoost starts from base_score and adds one tree at a time in float32; a running
        # sum in that order (not numpy's pairwise sum) gives the same bits.
        terms = np.empty((rows.shape[0], 1 + len(roots)), dtype=np.float32)
        terms[:, 0] = self.base_score
        terms[:, 1:] = self.leaf_value[self._leaves(rows, roots)]
        return np.add.accumulate(terms, axis=1, dtype=np.float32)[:, -1]

    def _leaves(
        self, rows: npt.NDArray[np.float32], roots: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """The flat leaf index each row reaches in each tree, shape (rows, trees)."""
        nodes = np.broadcast_to(roots, (rows.shape[0], len(roots)))
        row_index = np.arange(rows.shape[0])[:, None]
        for _ in range(self.max_depth):
            value = rows[row_index, self.feature[nodes]]
            go_left = np.where(
                np.isnan(value), self.default_left[nodes], value < self.threshold[nodes]
            )
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        return nodes


# -- model documents --------------------------------------------------------------------------
def _parse_document(data: bytes, path: Path) -> Mapping[str, Any]:
    """The model file as nested dicts: JSON text, or UBJSON (typed arrays become numpy)."""
    head = data.lstrip()[:2]
    try:
        if head[:1] != b"{":
            raise ValueError("it does not start with an object")
        if head[1:2] in (b'"', b"}", b"\n", b"\r", b" ", b"\t"):
            document = json.loads(data)
        else:
            document = _UbjReader(data).document()
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise TreeForestError(
            f"model file {path} is not a readable XGBoost JSON or UBJ model ({exc})"
        ) from None
    if not isinstance(document, dict):
        raise TreeForestError(f"model file {path} does not hold an XGBoost model object")
    return document


def _forest_from_document(document: Mapping[str, Any], path: Path) -> TreeForest:
    learner = document["learner"]
    booster = learner["gradient_booster"]
    _check_supported(learner, booster, path)
    model = booster["model"]
    trees = [_tree_arrays(tree, path) for tree in model["trees"]]
    params = learner["learner_model_param"]
    n_features = int(params["num_feature"])
    forest = _flatten(trees, n_features, path)
    return TreeForest(
        n_features=n_features,
        base_score=_base_score(params["base_score"], path),
        best_iteration=_best_iteration(learner.get("attributes", {})),
        iteration_indptr=_iteration_indptr(model, len(trees), path),
        **forest,
    )


def _check_supported(learner: Mapping[str, Any], booster: Mapping[str, Any], path: Path) -> None:
    name = booster.get("name")
    if name != "gbtree":
        raise TreeForestError(
            f"model file {path} uses the {name!r} booster; only 'gbtree' is evaluated without "
            "xgboost"
        )
    objective = learner["objective"]["name"]
    if objective not in IDENTITY_OBJECTIVES:
        raise TreeForestError(
            f"model file {path} has objective {objective!r}, whose predictions need a link "
            "function this evaluator does not apply"
        )
    params = learner["learner_model_param"]
    outputs = max(int(params.get("num_class", 0)), int(params.get("num_target", 1)))
    if outputs > 1:
        raise TreeForestError(
            f"model file {path} predicts {outputs} outputs; only single-output models are "
            "evaluated without xgboost"
        )
    if any(int(group) != 0 for group in booster["model"].get("tree_info", [])):
        raise TreeForestError(f"model file {path} has trees of several output groups")


def _tree_arrays(tree: Mapping[str, Any], path: Path) -> dict[str, np.ndarray]:
    """One tree's node arrays, after refusing what the flat walk cannot evaluate."""
    tree_id = tree.get("id", "?")
    if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
        raise TreeForestError(f"model file {path} has vector leaves in tree {tree_id}")
    if np.any(np.asarray(tree.get("split_type", []))) or len(tree.get("categories", [])):
        raise TreeForestError(
            f"model file {path} has categorical splits in tree {tree_id}; only numerical "
            "splits are evaluated without xgboost"
        )
    arrays: dict[str, np.ndarray] = {
        "left": np.asarray(tree["left_children"], dtype=np.int64),
        "right": np.asarray(tree["right_children"], dtype=np.int64),
        "feature": np.asarray(tree["split_indices"], dtype=np.int64),
        "threshold": np.asarray(tree["split_conditions"], dtype=np.float32),
        "default_left": np.asarray(tree["default_left"]).astype(bool),
    }
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1 or int(tree["tree_param"]["num_nodes"]) not in sizes or 0 in sizes:
        raise TreeForestError(f"model file {path} has inconsistent node arrays in tree {tree_id}")
    return arrays


def _flatten(trees: Sequence[dict[str, np.ndarray]], n_features: int, path: Path) -> dict[str, Any]:
    """Concatenate the trees' nodes, turning child ids into flat indices."""
    if not trees:
        raise TreeForestError(f"model file {path} has no trees")
    sizes = np.array([len(t["left"]) for t in trees], dtype=np.int64)
    roots = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    offsets = np.repeat(roots, sizes)
    left = np.concatenate([t["left"] for t in trees])
    right = np.concatenate([t["right"] for t in trees])
    local = np.arange(len(left)) - offsets
    tree_size = np.repeat(sizes, sizes)
    is_leaf = left < 0
    inner_ok = (left >= 0) & (left < tree_size) & (right >= 0) & (right < tree_size)
    feature = np.concatenate([t["feature"] for t in trees])
    if not np.all(is_leaf | inner_ok) or np.any(
        ~is_leaf & ((feature < 0) | (feature >= n_features))
    ):
        raise TreeForestError(f"model file {path} has a tree node pointing outside its tree")
    threshold = np.concatenate([t["threshold"] for t in trees])
    flat_left = np.where(is_leaf, local, left) + offsets
    flat_right = np.where(is_leaf, local, right) + offsets
    return {
        "roots": roots,
        "left": flat_left,
        "right": flat_right,
        "feature": np.where(is_leaf, 0, feature),
        "threshold": threshold,
        "default_left": np.concatenate([t["default_left"] for t in trees]),
        # XGBoost stores a leaf's value in its split condition.
        "leaf_value": np.where(is_leaf, threshold, np.float32(0)).astype(np.float32),
        "max_depth": _max_depth(roots, flat_left, flat_right, is_leaf, path),
    }


def _max_depth(
    roots: npt.NDArray[np.int64],
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    is_leaf: npt.NDArray[np.bool_],
    path: Path,
) -> int:
    frontier = roots[~is_leaf[roots]]
    depth = 0
    while frontier.size:
        depth += 1
        if depth > len(left):  # only a cycle can be deeper than the node count
            raise TreeForestError(f"model file {path} has a tree whose nodes form a cycle")
        children = np.concatenate((left[frontier], right[frontier]))
        frontier = children[~is_leaf[children]]
    return depth


def _base_score(value: Any, path: Path) -> np.float32:
    """``base_score`` as XGBoost writes it: a number, "5E-1", or (>= 2.1) "[5E-1]"."""
    text = str(value).strip().strip("[]")
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) != 1:
        raise TreeForestError(
            f"model file {path} has base_score {value!r}; only a single intercept is supported"
        )
    return np.float32(parts[0])


def _best_iteration(attributes: Mapping[str, Any]) -> int | None:
    value = attributes.get("best_iteration")
    return None if value is None else int(value)


def _iteration_indptr(model: Mapping[str, Any], n_trees: int, path: Path) -> npt.NDArray[np.int64]:
    indptr = model.get("iteration_indptr")
    if indptr is None:  # written by XGBoost < 2: rounds of num_parallel_tree trees each
        per_round = int(model["gbtree_model_param"].get("num_parallel_tree", 1))
        indptr = np.arange(0, n_trees + 1, per_round)
    bounds = np.asarray(indptr, dtype=np.int64)
    if bounds.size < 2 or bounds[0] != 0 or bounds[-1] != n_trees or np.any(np.diff(bounds) < 0):
        raise TreeForestError(f"model file {path} has boosting rounds that do not match its trees")
    return bounds


# -- UBJSON -----------------------------------------------------------------------------------
# Markers are compared as byte values (ints): indexing bytes is the cheapest read in Python.
_UBJ_NUMBERS: dict[int, struct.Struct] = {
    ord("i"): struct.Struct(">b"),
    ord("U"): struct.Struct(">B"),
    ord("I"): struct.Struct(">h"),
    ord("l"): struct.Struct(">i"),
    ord("L"): struct.Struct(">q"),
    ord("d"): struct.Struct(">f"),
    ord("D"): struct.Struct(">d"),
}
_UBJ_LENGTHS = frozenset(ord(m) for m in "iUIlL")
_UBJ_CONSTANTS: dict[int, Any] = {ord("Z"): None, ord("T"): True, ord("F"): False}
_NOOP, _STRING, _HIGH_PRECISION, _CHAR = ord("N"), ord("S"), ord("H"), ord("C")
_ARRAY, _ARRAY_END, _OBJECT, _OBJECT_END = ord("["), ord("]"), ord("{"), ord("}")
_TYPE, _COUNT = ord("$"), ord("#")


class _UbjReader:
    """A reader of Universal Binary JSON (https://ubjson.org), the format of XGBoost's UBJ.

    Typed numeric arrays (``[$d#L<n>...``), which hold nearly every byte of a model, are
    read with one ``np.frombuffer`` each; every other value is one ``struct`` read.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def document(self) -> Any:
        """The whole input as one value.

        Raises:
            ValueError: malformed or truncated data, or bytes after the value.
        """
        try:
            value = self._value(self._marker())
        except (IndexError, struct.error):
            raise ValueError(f"truncated at offset {self._pos}") from None
        if self._pos != len(self._data):
            raise ValueError(f"trailing bytes at offset {self._pos}")
        return value

    def _marker(self) -> int:
        data, pos = self._data, self._pos
        while data[pos] == _NOOP:  # IndexError past the end: the caller reports truncation
            pos += 1
        self._pos = pos + 1
        return data[pos]

    def _peek(self) -> int | None:
        return self._data[self._pos] if self._pos < len(self._data) else None

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ValueError(f"truncated at offset {self._pos}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def _value(self, marker: int) -> Any:
        if marker in _UBJ_NUMBERS:
            return self._number(marker)
        if marker in _UBJ_CONSTANTS:
            return _UBJ_CONSTANTS[marker]
        if marker == _STRING:
            return self._string()
        if marker == _ARRAY:
            return self._array()
        if marker == _OBJECT:
            return self._object()
        if marker == _HIGH_PRECISION:
            return float(self._string())
        if marker == _CHAR:
            return self._take(1).decode("ascii")
        raise ValueError(f"unknown UBJSON marker {chr(marker)!r} at offset {self._pos - 1}")

    def _number(self, marker: int) -> Any:
        layout = _UBJ_NUMBERS[marker]
        (value,) = layout.unpack_from(self._data, self._pos)
        self._pos += layout.size
        return value

    def _length(self) -> int:
        marker = self._marker()
        if marker not in _UBJ_LENGTHS:
            raise ValueError(f"a length has marker {chr(marker)!r} at offset {self._pos - 1}")
        length = int(self._number(marker))
        if length < 0:
            raise ValueError(f"negative length at offset {self._pos}")
        return length

    def _string(self) -> str:
        return self._take(self._length()).decode("utf-8")

    def _container_header(self) -> tuple[int | None, int | None]:
        """The optional ``$type`` and ``#count`` of an optimised container."""
        if self._peek() == _TYPE:
            self._pos += 1
            kind = self._take(1)[0]
            if self._peek() != _COUNT:
                raise ValueError(f"typed container without a count at offset {self._pos}")
            self._pos += 1
            return kind, self._length()
        if self._peek() == _COUNT:
            self._pos += 1
            return None, self._length()
        return None, None

    def _array(self) -> Any:
        kind, count = self._container_header()
        if count is None:
            items = []
            while (marker := self._marker()) != _ARRAY_END:
                items.append(self._value(marker))
            return items
        if kind in _UBJ_NUMBERS:
            layout = _UBJ_NUMBERS[kind]
            dtype = np.dtype(layout.format)
            raw = self._take(count * dtype.itemsize)
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        if kind is not None:
            return [self._value(kind) for _ in range(count)]
        return [self._value(self._marker()) for _ in range(count)]

    def _object(self) -> dict[str, Any]:
        kind, count = self._container_header()
        result: dict[str, Any] = {}
        if count is None:
            while self._peek() != _OBJECT_END:
                if self._peek() == _NOOP:
                    self._pos += 1
                    continue
                key = self._string()
                result[key] = self._value(self._marker())
            self._pos += 1
            return result
        for _ in range(count):
            key = self._string()
            result[key] = self._value(kind if kind is not None else self._marker())
        return result


__all__ = ["IDENTITY_OBJECTIVES", "TreeForest", "TreeForestError"]
