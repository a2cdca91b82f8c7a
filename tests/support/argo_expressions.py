"""How Argo v4.1.2 evaluates a template's custom metrics when a step completes, rebuilt for the tests.

Follows ``workflow/controller/operator.go`` (``computeMetrics``), ``steps.go`` (``prepareMetricScope``,
``shouldExecute``), ``util/template`` (``Replace`` with ``allowUnresolved=false``: a variable an expression reads
that is not in scope is an error unless guarded by ``??`` or ``?.``; an expression that fails or yields nil is an
error) and ``workflow/executor`` (``SaveParameters``: a missing ``valueFrom.path`` file gives the parameter its
``default``, or fails the wait container without one). The whole metric, value included, is substituted before
``when`` is looked at, so a metric reading an output that a failed step never wrote is a ``MetricsError`` even
though its ``when`` would have skipped it.

Expressions: the subset of expr-lang our templates use (identifiers, member access and ``['key']``, ``?.``,
``??``, ``==``, ``||``, ``&&``, calls of ``fromJSON``, ``toJson``, ``jsonpath``, ``asInt``, ``asFloat``, string
and number literals).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(\d+\.\d+|\d+)|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(\?\?|\?\.|==|!=|\|\||&&|[().,\[\]])|([A-Za-z_]\w*))"
)
_TAG = re.compile(r"\{\{(.*?)\}\}")
_BUILTINS = {"fromJSON", "toJson"}
"""expr-lang builtins: parsed as builtin nodes, never looked up in the environment."""


class ExpressionError(ValueError):
    """The controller's template substitution failed (reported as a MetricsError for a metric)."""


@dataclass
class _Node:
    kind: str  # ident, member, call, lit, binary
    value: Any = None
    children: tuple[_Node, ...] = ()
    optional: bool = False


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            if not match:
                raise ExpressionError(f"failed to evaluate expression: unexpected {text[pos:]!r}")
            number, string, op, ident = match.groups()
            self.tokens.append(
                ("num", number) if number else ("str", string) if string else ("op", op) if op else ("id", ident)
            )
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ExpressionError(f"failed to evaluate expression: expected {value!r}")
        self.i += 1
        return token

    def parse(self) -> _Node:
        node = self.binary(0)
        if self.peek() is not None:
            raise ExpressionError(f"failed to evaluate expression: unexpected {self.peek()[1]!r}")
        return node

    _PRECEDENCE = (("||",), ("&&",), ("==", "!="), ("??",))

    def binary(self, level: int) -> _Node:
        if level == len(self._PRECEDENCE):
            return self.postfix()
        node = self.binary(level + 1)
        while (token := self.peek()) and token[0] == "op" and token[1] in self._PRECEDENCE[level]:
            self.take()
            node = _Node("binary", token[1], (node, self.binary(level + 1)))
        return node

    def postfix(self) -> _Node:
        node = self.primary()
        while (token := self.peek()) and token[1] in (".", "?.", "["):
            self.take()
            if token[1] == "[":  # tasks['index-plan-x']: a member whose name is a string literal
                key = self.primary()
                self.take("]")
                node = _Node("member", key.value, (node,))
                continue
            node = _Node("member", self.take()[1], (node,), optional=token[1] == "?.")
        return node

    def primary(self) -> _Node:
        kind, value = self.take()
        if kind == "num":
            return _Node("lit", float(value) if "." in value else int(value))
        if kind == "str":
            return _Node("lit", json.loads('"' + value[1:-1].replace('\\"', '"') + '"'))
        if value == "(":
            node = self.binary(0)
            self.take(")")
            return node
        if kind == "id" and self.peek() and self.peek()[1] == "(":
            self.take("(")
            args = []
            while self.peek() and self.peek()[1] != ")":
                args.append(self.binary(0))
                if self.peek() and self.peek()[1] == ",":
                    self.take(",")
            self.take(")")
            return _Node("call", value, tuple(args))
        if kind == "id":
            return _Node("ident", value)
        raise ExpressionError(f"failed to evaluate expression: unexpected {value!r}")


def _path(node: _Node) -> str | None:
    if node.kind == "ident":
        return node.value
    if node.kind == "member" and not node.optional and (base := _path(node.children[0])):
        return f"{base}.{node.value}"
    return None


def _identifiers(node: _Node, guarded: bool = False) -> list[str]:
    """Variables the expression needs (``missingVarsInEnv``): member chains left of ``??`` are guarded."""
    if node.kind == "binary" and node.value == "??":
        return _identifiers(node.children[0], guarded=True) + _identifiers(node.children[1], guarded)
    if node.kind == "call":
        names = [] if node.value in _BUILTINS else [node.value]
        return names + [i for arg in node.children for i in _identifiers(arg, guarded)]
    if node.kind == "member":
        path = _path(node)
        inner = _identifiers(node.children[0], guarded or node.optional)
        return inner + ([path] if path and not guarded else [])
    if node.kind == "ident":
        return [node.value]  # a base identifier is never guarded
    return [i for child in node.children for i in _identifiers(child, guarded)]


def _expand(scope: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested maps (``util/expand``), keeping the flat keys too."""
    env: dict[str, Any] = dict(scope)
    for key, value in scope.items():
        parts = key.split(".")
        target = env
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = target[part] = {}
            target = nxt
        target.setdefault(parts[-1], value)
    return env


def _has(env: dict[str, Any], name: str) -> bool:
    if name in env:
        return True
    current: Any = env
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    return True


def _jsonpath(document: str, path: str) -> Any:
    value = json.loads(document)
    for part in path.removeprefix("$").strip(".").split("."):
        if not isinstance(value, dict) or part not in value:
            raise ExpressionError(f"failed to evaluate expression: jsonpath {path}: key not found")
        value = value[part]
    return value


_FUNCTIONS = {"fromJSON": json.loads, "toJson": json.dumps, "jsonpath": _jsonpath, "asInt": int, "asFloat": float}


def _eval(node: _Node, env: dict[str, Any]) -> Any:
    if node.kind == "lit":
        return node.value
    if node.kind == "ident":
        if node.value not in env:
            raise ExpressionError(f"failed to evaluate expression: unknown name {node.value}")
        return env[node.value]
    if node.kind == "member":
        base = _eval(node.children[0], env)
        if base is None:
            if node.optional:
                return None
            raise ExpressionError(f"failed to evaluate expression: cannot fetch {node.value} from nil")
        if not isinstance(base, dict):
            raise ExpressionError(
                f"failed to evaluate expression: cannot fetch {node.value} from {type(base).__name__}"
            )
        return base.get(node.value)
    if node.kind == "call":
        args = [_eval(a, env) for a in node.children]
        try:
            return _FUNCTIONS[node.value](*args)
        except (ValueError, TypeError, KeyError) as exc:
            raise ExpressionError(f"failed to evaluate expression: {node.value}: {exc}") from exc
    left = _eval(node.children[0], env)
    if node.value == "??":
        return left if left is not None else _eval(node.children[1], env)
    if node.value == "||":
        return bool(left) or bool(_eval(node.children[1], env))
    if node.value == "&&":
        return bool(left) and bool(_eval(node.children[1], env))
    right = _eval(node.children[1], env)
    return (left == right) if node.value == "==" else (left != right)


def evaluate(expression: str, scope: dict[str, Any]) -> Any:
    """One ``{{=…}}`` expression under Argo's strict substitution (``allowUnresolved=false``)."""
    tree = _Parser(expression).parse()
    env = _expand(scope)
    for name in _identifiers(tree):
        if name not in _FUNCTIONS and not _has(env, name):
            raise ExpressionError(f"failed to evaluate expression: {name} is missing")
    result = _eval(tree, {**env, **_FUNCTIONS})
    if result is None:
        raise ExpressionError(f"failed to evaluate expression {expression!r}")
    return result


def replace(text: str, scope: dict[str, Any]) -> str:
    """``template.Replace(…, allowUnresolved=false)`` of one string: every tag must resolve."""

    def one(match: re.Match[str]) -> str:
        tag = match.group(1)
        if tag.startswith("="):
            result = evaluate(tag[1:], scope)
            return result if isinstance(result, str) else json.dumps(result)
        if tag.strip() not in scope:
            raise ExpressionError(f"failed to resolve {{{{{tag}}}}}")
        return str(scope[tag.strip()])

    return _TAG.sub(one, text)


def output_parameters(template: dict[str, Any], files: dict[str, str]) -> dict[str, str]:
    """``SaveParameters``: each ``valueFrom.path`` output from the files main wrote, else its default."""
    values = {}
    for param in (template.get("outputs") or {}).get("parameters") or []:
        path = (param.get("valueFrom") or {}).get("path")
        if not path:
            continue
        if path in files:
            values[param["name"]] = files[path].removesuffix("\n")
        elif "default" in param["valueFrom"]:
            values[param["name"]] = param["valueFrom"]["default"]
        else:
            raise ExpressionError(f"wait: open {path}: no such file or directory")
    return values


def metric_scope(status: str, duration: float, outputs: dict[str, str], exit_code: int | None) -> dict[str, Any]:
    """``prepareMetricScope`` of a completed step."""
    scope: dict[str, Any] = {"status": status, "duration": f"{duration:f}"}
    if exit_code is not None:
        scope["exitCode"] = str(exit_code)
    scope.update({f"outputs.parameters.{name}": value for name, value in outputs.items()})
    return scope


def _when(condition: str) -> bool:
    """``shouldExecute``: govaluate with bare words as strings (enough for ``a == b`` / ``a != b``)."""
    left, op, right = re.fullmatch(r"\s*(.*?)\s*(==|!=)\s*(.*?)\s*", condition).groups()
    return (left.strip("'\"") == right.strip("'\"")) == (op == "==")


def compute_metric(metric: dict[str, Any], scope: dict[str, Any]) -> float | None:
    """The value the controller emits for ``metric``, or None when ``when`` skips it.

    Raises ``ExpressionError`` where the controller reports a MetricsError.
    """
    replace(json.dumps(metric), scope)  # computeMetrics substitutes the whole metric, value included, first
    if metric.get("when") and not _when(replace(metric["when"], scope)):
        return None
    value = (metric.get("gauge") or metric.get("counter") or {})["value"]
    return float(replace(value, scope))
