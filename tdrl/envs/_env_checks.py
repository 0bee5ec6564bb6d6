"""What ``EnvBase.step`` and ``reset`` check: the action against its spec, the done flags, the outputs.

The error messages of the env API, the completion of done flags a ``_step`` left out,
the exact cast of 0/1 actions (:class:`_ZeroOneCast`), and the :class:`_EnvChecks` mixin
of :class:`~tdrl.envs.EnvBase` holding the per-spec action checks and the
``set_validation`` checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read, td_write
from tdrl.envs._validation import _value_problem
from tdrl.specs import Binary, Composite, MultiOneHot, NestedKey, OneHot, TensorSpec

__all__ = ["_EnvChecks", "_ZeroOneCast", "_complete_done_flags", "_shown"]

_NO_ACTION = (
    "{env}.step: the tensordict has no action entry {key!r} (it has keys {keys}). "
    "Set it first (td[{key!r}] = ...), use env.rand_step(td), or pass a policy that writes it."
)
_BAD_ACTION_SHAPE = (
    "{env}.step: action {key!r} has shape {actual}, expected {expected} "
    "(env batch_size {batch} + action spec {spec}). Reshape the action or fix the policy's output."
)
_BAD_ACTION_DTYPE = (
    "{env}.step: action {key!r} has dtype {actual}, expected {expected} (from the action spec). "
    "Cast it with .to({expected}) or build the policy for this spec."
)
_NOT_ZERO_ONE = (
    "{env}.step: action {key!r} {what}, got {value}{where} (dtype {actual}); cast to the spec's {expected} it "
    "would become another action. {fix}"
)
_ONE_HOT_FIX = (
    "Pass a one-hot action, e.g. a sample of OneHotCategorical (not its probabilities or logits), or build the "
    "env with categorical_action_encoding=True (GymEnv, ...) and pass an index, e.g. probs.argmax(-1)."
)
_BINARY_FIX = "Pass 0/1 values, e.g. a sample of Bernoulli (not its probabilities), or threshold them first."
_NOT_RESET = "{env}.step was called before env.reset(): call td = env.reset() first."
_ACTION_NOT_IN_SPEC = "{env}.step: action {key!r} is not in its spec: {why}. Spec: {spec}. {fix}"
_NON_FINITE_FIX = (
    "A NaN or inf action usually comes from the policy's network (a diverged loss, a log or a division by 0): "
    "check its inputs, e.g. with set_validation(outputs=True), and its loss."
)
_BOUNDED_FIX = (
    "Keep the policy's output in the box: e.g. TanhNormal with low=env.action_spec_unbatched.low and "
    "high=env.action_spec_unbatched.high, or clamp it with env.action_spec.project(action)."
)
_DISCRETE_FIX = (
    "Draw the action from the spec's set (e.g. a Categorical or OneHotCategorical over its n values), "
    "or map it there with env.action_spec.project(action)."
)
_OUTPUT_NOT_IN_SPEC = (
    "{env}.{method} wrote {key!r} outside its spec: {why}. Spec: {spec}. Fix the env's _{method} (or the "
    "transform that writes the entry), or declare the spec the data follows."
)
_NOT_A_TENSORDICT = (
    "{env}.step takes a TensorDict holding the action, got {got}. Use env.rand_step(td) for a random action, "
    "or set the action on the TensorDict that env.reset() returned (td[{key!r}] = ...) and pass that."
)
_STEP_RETURNED = (
    "{env}._step must return a TensorDict with the next observation, the reward and the done flags, got {got}."
)
_RESET_RETURNED = "{env}._reset must return a TensorDict with the first observation, got {got}."
_NO_DONE = (
    "{env}._step returned no {key!r} entry (it wrote {keys}). _step must return a TensorDict with the next "
    "observation, the reward and the done flags {done_keys} (bool, shape [*batch_size, 1]; "
    "done = terminated | truncated): add the missing entry to what _step returns."
)


def _complete_done_flags(next_td: TensorDictBase, done_keys: list, env: str) -> None:
    """Fill the done flags ``_step`` left out, as TorchRL does, or raise naming the missing one.

    Per group (root or nested): ``terminated`` missing is ``done`` (when ``truncated`` is
    missing too); ``done`` missing is ``terminated | truncated``; ``truncated`` missing is
    False. A group with neither ``done`` nor ``terminated`` is an error: nothing says
    when its episodes end.
    """
    written = {key for key in done_keys if td_read(next_td, key) is not None}

    def sibling(key: NestedKey, name: str) -> NestedKey:
        return (*key[:-1], name) if isinstance(key, tuple) else name

    def missing(key: NestedKey) -> KeyError:
        keys = sorted(map(str, next_td.keys(True, True)))
        return KeyError(_NO_DONE.format(env=env, key=key, keys=keys, done_keys=done_keys))

    for key in done_keys:
        if key in written:
            continue
        name = key[-1] if isinstance(key, tuple) else key
        done, terminated = sibling(key, "done"), sibling(key, "terminated")
        truncated = sibling(key, "truncated")
        if name == "terminated" and done in written and truncated not in written:
            value = td_read(next_td, done)
        elif name == "done" and terminated in written:
            value = td_read(next_td, terminated)
            if truncated in written:
                value = value | td_read(next_td, truncated)
        elif name == "truncated" and (done in written or terminated in written):
            value = torch.zeros_like(td_read(next_td, done if done in written else terminated))
        else:
            raise missing(key)
        td_write(next_td, key, value)
        written.add(key)


def _shown(value: Any) -> str:
    """``None``, or a value's type name, for an error message."""
    return "None" if value is None else f"a {type(value).__name__}"


class _ZeroOneCast:
    """Casts an action of another dtype to a 0/1 spec's dtype, refusing values the cast would change.

    A one-hot, multi-one-hot or binary spec of an integer or bool dtype accepts actions
    of any dtype (torch.distributions samples floats), cast to the spec's dtype. The cast
    keeps the action only when every value is 0 or 1 (and, for one-hot, exactly one 1 per
    row or block): ``[0.3, 0.7]`` would become ``[0, 0]``. A float counts as 0 or 1 within
    a few ulps (4 eps of its dtype) and is rounded, not truncated: a straight-through sample
    (``one_hot + probs - probs.detach()``, what ``OneHotCategorical.rsample`` returns) is
    one-hot only up to rounding, and a plain cast turned its 0.99999994 into 0 (action 0,
    silently, on about a fifth of the rows).

    This runs on that cast path only. One env's action (a vector) is read as a Python list
    (about a microsecond); a batch takes a few tensor ops and one sync.
    """

    __slots__ = ("blocks", "fix", "ones", "what")

    def __init__(self, spec: TensorSpec) -> None:
        self.blocks: list[int] | None = None  # one-hot blocks along the last dim; None: binary (no row rule)
        if isinstance(spec, OneHot):
            self.blocks = [spec.shape[-1]]
            self.what, self.fix = "must be one-hot (exactly one 1 per row, the other values 0)", _ONE_HOT_FIX
        elif isinstance(spec, MultiOneHot):
            self.blocks = list(spec.nvec)
            self.what = f"must be one-hot in each block (blocks of sizes {self.blocks} along the last dim)"
            self.fix = _ONE_HOT_FIX
        else:
            self.what, self.fix = "must hold only 0 and 1", _BINARY_FIX
        self.ones = torch.ones(spec.shape[:-1], dtype=torch.int64, device=spec.device)

    def cast(self, action: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """``action`` as ``dtype`` (floats rounded to 0/1), or None when its values are not 0/1 (one-hot)."""
        blocks = self.blocks
        floating = action.dtype.is_floating_point
        if action.ndim == 1 and (blocks is None or len(blocks) == 1):  # one env: a Python list is cheapest
            values = action.tolist()
            exact = True
            n_ones = values.count(1)  # list.count compares with ==: 1.0 == 1 == True, and NaN equals nothing
            if n_ones + values.count(0) != len(values):
                if not floating:
                    return None
                tol, n_ones, exact = _tolerance(action.dtype), 0, False
                for v in values:
                    if abs(v - 1.0) <= tol:
                        n_ones += 1
                    elif not abs(v) <= tol:  # also False for NaN
                        return None
            if blocks is not None and n_ones != 1:
                return None
            return action.to(dtype) if exact else (action > 0.5).to(dtype)
        if floating:
            hard = action > 0.5
            if action.numel() and not bool((action - hard.to(action.dtype)).abs().max() <= _tolerance(action.dtype)):
                return None  # a value far from 0 and 1, or NaN (max propagates it)
        else:
            if not torch.equal(action.ne(0).to(action.dtype), action):
                return None
            hard = action
        if blocks is not None:
            parts = [hard] if len(blocks) == 1 else hard.split(blocks, -1)
            if not all(torch.equal(part.sum(-1), self.ones) for part in parts):
                return None
        return hard.to(dtype)

    def first_bad_row(self, action: torch.Tensor) -> tuple[list, str]:
        """The values of the first row that a cast would change, and where it is (for the message)."""
        rows = action.reshape(-1, action.shape[-1]) if action.ndim else action.reshape(1, 1)
        hard = rows > 0.5 if rows.dtype.is_floating_point else rows != 0
        tol = _tolerance(rows.dtype) if rows.dtype.is_floating_point else 0
        bad = ~((rows.double() - hard.double()).abs() <= tol).all(-1)
        for part in hard.split(self.blocks, -1) if self.blocks is not None else ():
            bad |= part.long().sum(-1) != 1
        index = int(bad.nonzero()[0, 0]) if bool(bad.any()) else 0
        where = ""
        if action.ndim > 1:
            position = torch.unravel_index(torch.tensor(index), action.shape[:-1])
            where = f" at batch index {[int(i) for i in position]}"
        return [float(f"{v:.6g}") if isinstance(v, float) else v for v in rows[index].tolist()], where


def _tolerance(dtype: torch.dtype) -> float:
    """How far from 0 or 1 a float action may be and still count as 0 or 1: a few rounding errors."""
    tol = _TOLERANCES.get(dtype)
    if tol is None:
        tol = _TOLERANCES[dtype] = 4 * torch.finfo(dtype).eps
    return tol


_TOLERANCES: dict[torch.dtype, float] = {}


class _EnvChecks:
    """The action and output checks of :class:`~tdrl.envs.EnvBase` (a mixin: EnvBase holds the state)."""

    if TYPE_CHECKING:
        _action_checks: list | None
        _done_checks: tuple

        @property
        def action_keys(self) -> list: ...

        @property
        def done_keys(self) -> list: ...

        @property
        def full_action_spec(self) -> Composite: ...

    def _prepare_action_checks(self) -> list:
        """(key, shape, dtype, castable, exact) per action entry, computed once per spec change.

        ``castable`` says whether an action of another dtype is converted rather than
        rejected: any float for a float spec, and any dtype for 0/1 specs (one-hot and
        binary), whose samples are floats in torch.distributions. A float index for a
        ``Categorical`` spec is rejected: truncating it would silently change the action.
        ``exact`` (a :class:`_ZeroOneCast`, for 0/1 specs of an integer or bool dtype)
        refuses values the cast would change, such as probabilities for a one-hot action.
        """
        checks = []
        for key in self.action_keys:
            spec = cast(TensorSpec, self.full_action_spec[key])  # action_keys are leaves
            zero_one = isinstance(spec, (OneHot, MultiOneHot, Binary))
            exact = _ZeroOneCast(spec) if zero_one and not spec.dtype.is_floating_point else None
            checks.append((key, spec.shape, spec.dtype, zero_one or spec.dtype.is_floating_point, exact))
        self._done_checks = tuple(self.done_keys)
        self._action_checks = checks
        return checks

    def _validate_actions(self, tensordict: TensorDictBase) -> None:
        """``set_validation``: every action entry against its spec (NaN/inf, bounds, discrete sets)."""
        for key in self.action_keys:
            spec = cast(TensorSpec, self.full_action_spec[key])  # action_keys are leaves
            why = _value_problem(spec, tensordict.get(key))
            if why is not None:
                if "not finite" in why:
                    fix = _NON_FINITE_FIX
                elif spec.dtype.is_floating_point:
                    fix = _BOUNDED_FIX
                else:
                    fix = _DISCRETE_FIX
                raise ValueError(
                    _ACTION_NOT_IN_SPEC.format(env=type(self).__name__, key=key, why=why, spec=spec, fix=fix)
                )

    def _validate_outputs(self, out: TensorDictBase, method: str, specs: tuple, prefix: tuple) -> None:
        """``set_validation(outputs=True)``: what ``reset``/``step`` wrote against the output specs."""
        for composite in specs:
            for key in composite.keys(True, True):
                value = td_read(out, key)
                if value is None:  # a declared entry left out: check_env_specs reports it
                    continue
                spec = composite[key]
                why = _value_problem(spec, value)
                if why is not None:
                    shown = (*prefix, *key) if isinstance(key, tuple) else ((*prefix, key) if prefix else key)
                    raise ValueError(
                        _OUTPUT_NOT_IN_SPEC.format(
                            env=type(self).__name__, method=method, key=shown, why=why, spec=spec
                        )
                    )

    def _zero_one_message(self, key: NestedKey, action: torch.Tensor, dtype: torch.dtype, exact: _ZeroOneCast) -> str:
        value, where = exact.first_bad_row(action.detach().cpu())
        return _NOT_ZERO_ONE.format(
            env=type(self).__name__,
            key=key,
            what=exact.what,
            value=value,
            where=where,
            actual=action.dtype,
            expected=dtype,
            fix=exact.fix,
        )
