"""Classifier heads fitted in numpy on backbone features (deploy/embed.py), and their ONNX graphs. No
TensorFlow: ``edgevision train --head knn|linear`` and the collect window's live head use them, on a
Jetson too.

- kNN: the training features L2-normalised and stored; a query's k nearest by cosine similarity vote,
  each vote weighted by its class's inverse frequency (class-balanced) times ``1 + 0.001 * similarity``
  (ties go to the nearer neighbours); probabilities are the normalised votes.
- linear: softmax regression on standardised features, L2-regularised, fitted by full-batch Nesterov
  gradient descent with balanced sample weights; the standardisation is folded into one Gemm.

:func:`join` puts a head behind the backbone graph (onnx.compose) into ONE classify model with the usual
spec, so run, predict, bench and ``edgevision.load`` take it like any other. The ``onnx`` package is
imported only there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .spec import SPEC_KEY, TaskSpec

TIE = 1e-3  # similarity's share of a kNN vote: breaks ties towards the nearer neighbours
KS = (1, 3, 5, 7, 9, 15)
L2S = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
BACKBONE_SHA_KEY = "edgevision.backbone_sha256"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    recalls = [float((y_pred[y_true == c] == c).mean()) for c in range(num_classes) if (y_true == c).any()]
    return float(np.mean(recalls)) if recalls else 0.0


def _check(features: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> None:
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (n, dim) with one label each, got {features.shape} and {labels.shape}")
    if len(classes) < 2:
        raise ValueError(f"a classifier needs two or more classes, got {list(classes)}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels must be class ids 0..{len(classes) - 1}")


@dataclass(frozen=True)
class KnnHead:
    embeddings: np.ndarray  # (N, dim) float32, L2-normalised
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    k: int
    class_weight: np.ndarray = field(init=False)  # (C,) N / (C * n_c), 0 for a class without examples

    def __post_init__(self) -> None:
        object.__setattr__(self, "embeddings", l2_normalize(self.embeddings))
        object.__setattr__(self, "labels", np.asarray(self.labels, np.int64))
        _check(self.embeddings, self.labels, self.classes)
        if not 1 <= self.k <= len(self.labels):
            raise ValueError(f"k must be within 1..{len(self.labels)} (the stored examples), got {self.k}")
        counts = np.bincount(self.labels, minlength=len(self.classes)).astype(np.float64)
        present = counts > 0
        weight = np.where(present, len(self.labels) / (present.sum() * np.maximum(counts, 1)), 0.0)
        object.__setattr__(self, "class_weight", weight.astype(np.float32))

    def vote_table(self) -> np.ndarray:
        """(N, C) float32: each stored example's one-hot label times its class weight."""
        table = np.zeros((len(self.labels), len(self.classes)), np.float32)
        table[np.arange(len(self.labels)), self.labels] = self.class_weight[self.labels]
        return table

    def probs(self, features: np.ndarray) -> np.ndarray:
        """(n, dim) features -> (n, C) probabilities."""
        sims = l2_normalize(features) @ self.embeddings.T  # (n, N)
        idx = np.argsort(-sims, axis=1, kind="stable")[:, : self.k]  # (n, k)
        near = np.take_along_axis(sims, idx, axis=1)  # (n, k)
        votes = (self.vote_table()[idx] * (1.0 + TIE * near)[:, :, None]).sum(axis=1)  # (n, C)
        return (votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray  # (dim, C) float32, on raw features (standardisation folded in)
    bias: np.ndarray  # (C,) float32
    classes: tuple[str, ...]
    l2: float = 0.0

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float32) @ self.weight + self.bias

    def probs(self, features: np.ndarray) -> np.ndarray:
        z = self.logits(features)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_knn(f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray, y_val: np.ndarray,
            classes: tuple[str, ...], ks: tuple[int, ...] = KS) -> tuple[KnnHead, dict]:
    """The k of ``ks`` with the best balanced accuracy on val (ties: the larger k, the smoother vote)."""
    scores = {}
    for k in ks:
        if k > len(y_train):
            break
        head = KnnHead(f_train, y_train, classes, k)
        scores[k] = balanced_accuracy(y_val, head.probs(f_val).argmax(1), len(classes)) if len(y_val) else 0.0
    best = max(scores, key=lambda k: (scores[k], k))
    return KnnHead(f_train, y_train, classes, best), {"k": best, "val_balanced_accuracy_by_k": scores}


def _lipschitz(z: np.ndarray, s: np.ndarray, iters: int = 30) -> float:
    """Largest eigenvalue of z' diag(s) z by power iteration."""
    v = np.random.default_rng(0).standard_normal(z.shape[1])
    for _ in range(iters):
        v = z.T @ (s * (z @ v))
        v /= np.linalg.norm(v) + 1e-12
    return float(v @ (z.T @ (s * (z @ v))))


def _softmax_regression(z: np.ndarray, y: np.ndarray, s: np.ndarray, num_classes: int, l2: float, iters: int,
                        start: np.ndarray | None) -> np.ndarray:
    """(dim + 1, C) weights (last row: bias, not regularised) minimising the weighted cross-entropy + l2/2 |W|^2."""
    z1 = np.hstack([z, np.ones((len(z), 1), np.float32)])  # (n, dim + 1)
    s = s / s.sum()
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    step = 1.0 / (0.5 * _lipschitz(z1, s) + l2)
    w = np.zeros((z1.shape[1], num_classes), np.float32) if start is None else start.copy()
    prev, momentum = w.copy(), 1.0
    for _ in range(iters):  # Nesterov's accelerated gradient (FISTA's momentum)
        logits = z1 @ w
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = z1.T @ ((p - onehot) * s[:, None])
        grad[:-1] += l2 * w[:-1]
        nxt = w - step * grad
        m_next = (1 + np.sqrt(1 + 4 * momentum**2)) / 2
        w, prev = nxt + ((momentum - 1) / m_next) * (nxt - prev), nxt
        momentum = m_next
    return prev


def fit_linear(f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray, y_val: np.ndarray,
               classes: tuple[str, ...], l2s: tuple[float, ...] = L2S, iters: int = 300) -> tuple[LinearHead, dict]:
    """The L2 strength of ``l2s`` with the best balanced accuracy on val (ties: the stronger one)."""
    f_train = np.asarray(f_train, np.float32)
    _check(f_train, y_train, classes)
    mu, sigma = f_train.mean(axis=0), f_train.std(axis=0) + 1e-6
    z = (f_train - mu) / sigma
    counts = np.bincount(y_train, minlength=len(classes)).astype(np.float32)
    s = (1.0 / np.maximum(counts, 1))[y_train]  # balanced: each class the same total weight
    scores, heads, start = {}, {}, None
    for l2 in sorted(l2s, reverse=True):  # strong to weak, each warm-started from the last
        start = _softmax_regression(z, y_train, s, len(classes), l2, iters, start)
        weight = start[:-1] / sigma[:, None]  # fold (f - mu) / sigma into the Gemm
        bias = start[-1] - (mu / sigma) @ start[:-1]
        heads[l2] = LinearHead(weight.astype(np.float32), bias.astype(np.float32), classes, l2)
        pred = heads[l2].probs(f_val).argmax(1) if len(y_val) else np.zeros(0, np.int64)
        scores[l2] = balanced_accuracy(y_val, pred, len(classes)) if len(y_val) else 0.0
    best = max(scores, key=lambda l2: (scores[l2], l2))
    return heads[best], {"l2": best, "val_balanced_accuracy_by_l2": scores, "iterations": iters}


# --- ONNX ---------------------------------------------------------------------------------------------------


def head_graph(head: KnnHead | LinearHead, dim: int, opset: int = 17, ir_version: int = 8):
    """An ONNX model 'features' (batch, dim) -> 'probs' (batch, C) computing ``head.probs``."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, array) -> object:
        return numpy_helper.from_array(np.asarray(array), name)

    c = len(head.classes)
    if isinstance(head, LinearHead):
        inits = [const("W", head.weight), const("b", head.bias)]
        nodes = [helper.make_node("Gemm", ["features", "W", "b"], ["logits"]),
                 helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    else:
        inits = [const("ET", head.embeddings.T.copy()), const("votes_table", head.vote_table()),
                 const("k", np.array([head.k], np.int64)), const("eps", np.array(1e-12, np.float32)),
                 const("one", np.array(1.0, np.float32)), const("tie", np.array(TIE, np.float32)),
                 const("ax1", np.array([1], np.int64)), const("ax2", np.array([2], np.int64))]
        nodes = [
            helper.make_node("ReduceL2", ["features"], ["norm"], axes=[1], keepdims=1),  # (n, 1)
            helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
            helper.make_node("Div", ["features", "norm_safe"], ["unit"]),  # (n, dim)
            helper.make_node("MatMul", ["unit", "ET"], ["sims"]),  # (n, N) cosine similarities
            helper.make_node("TopK", ["sims", "k"], ["near", "idx"], axis=1, largest=1, sorted=1),  # (n, k)
            helper.make_node("Gather", ["votes_table", "idx"], ["votes_k"], axis=0),  # (n, k, C)
            helper.make_node("Mul", ["near", "tie"], ["near_t"]),
            helper.make_node("Add", ["near_t", "one"], ["scale"]),  # (n, k)
            helper.make_node("Unsqueeze", ["scale", "ax2"], ["scale3"]),  # (n, k, 1)
            helper.make_node("Mul", ["votes_k", "scale3"], ["votes_w"]),
            helper.make_node("ReduceSum", ["votes_w", "ax1"], ["votes"], keepdims=0),  # (n, C)
            helper.make_node("ReduceSum", ["votes", "ax1"], ["total"], keepdims=1),  # (n, 1)
            helper.make_node("Max", ["total", "eps"], ["total_safe"]),
            helper.make_node("Div", ["votes", "total_safe"], ["probs"]),
        ]
    graph = helper.make_graph(
        nodes, f"{type(head).__name__.lower()}",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", c])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def join(backbone_path: Path, head: KnnHead | LinearHead, input_hw: tuple[int, int]):
    """ONE classify model: the backbone (input fixed at ``input_hw``) then the head, with its spec."""
    import onnx
    from onnx import compose, helper

    from .onnxmeta import file_sha256

    backbone = onnx.load(str(backbone_path))
    opset = next(o.version for o in backbone.opset_import if o.domain in ("", "ai.onnx"))
    dim = backbone.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    out_name = backbone.graph.output[0].name
    tail = head_graph(head, dim, opset=opset, ir_version=backbone.ir_version)
    del backbone.metadata_props[:]
    model = compose.merge_models(backbone, tail, io_map=[(out_name, "features")], prefix2="head/")
    for d, side in zip(model.graph.input[0].type.tensor_type.shape.dim[1:3], input_hw):
        d.ClearField("dim_param")
        d.dim_value = side
    _rename_output(model, "probs")
    spec = TaskSpec(kind="classify", input_hw=tuple(input_hw), labels=head.classes, output="probs")
    del model.metadata_props[:]
    helper.set_model_props(model, {SPEC_KEY: spec.to_json(), BACKBONE_SHA_KEY: file_sha256(backbone_path)})
    model.producer_name, model.producer_version = "edgevision", "0.1"
    onnx.checker.check_model(model)
    return model


def _rename_output(model, name: str) -> None:
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    model.graph.output[0].name = name
