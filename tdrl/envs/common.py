"""EnvBase: the environment API every tdrl env implements.

An env reads the root of a TensorDict (the action) and writes what follows under
``"next"``: the observation, ``"reward"`` and the done flags ``"done"``,
``"terminated"`` and ``"truncated"``. Its specs say, for every entry it reads or
writes, the shape (batch dims first), dtype and domain.

A subclass declares its specs in ``__init__`` and implements three methods:

- ``_reset(tensordict) -> TensorDict``: the first observation (and done flags, which
  default to False). For a batched env, ``tensordict["_reset"]`` (shape ``[*B, 1]``)
  flags the sub-envs to reset; entries of the others are kept by ``reset``.
- ``_step(tensordict) -> TensorDict``: reads the action, returns the next observation,
  reward and done flags.
- ``_set_seed(seed)``: seeds the simulator.

Examples:
    >>> from tdrl.testing import CountingEnv
    >>> env = CountingEnv(max_steps=4)
    >>> ro = env.rollout(10)
    >>> ro.batch_size  # stops at the first done
    torch.Size([4])
    >>> ro["next", "observation"].squeeze(-1)
    tensor([1., 2., 3., 4.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from tdrl._compat import td_read, td_write
from tdrl.envs._validation import _validation, _value_problem
from tdrl.envs.utils import DONE_KEYS, step_mdp
from tdrl.specs import Binary, Categorical, Composite, MultiOneHot, NestedKey, OneHot, TensorSpec, Unbounded

__all__ = ["EnvBase", "make_composite_from_td"]

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


def make_composite_from_td(td: TensorDictBase) -> Composite:
    """A Composite of Unbounded specs describing ``td``'s structure (shapes, dtypes)."""
    spec = Composite(shape=td.batch_size)
    for key, value in td.items():
        if isinstance(value, TensorDictBase):
            spec[key] = make_composite_from_td(value)
        else:
            spec[key] = Unbounded(shape=value.shape, dtype=value.dtype, device=value.device)
    return spec


def _done_spec(batch_size: torch.Size, device: torch.device) -> Composite:
    leaf = Categorical(2, shape=(*batch_size, 1), dtype=torch.bool, device=device)
    return Composite({k: leaf.clone() for k in DONE_KEYS}, shape=batch_size)


class EnvBase(nn.Module):
    """Base class of tdrl environments.

    Args:
        device: where the env's tensors live (default CPU).
        batch_size: the env's batch shape: ``[]`` for one env, ``[N]`` for N envs
            stepped together.

    Attributes:
        output_spec: Composite holding ``full_observation_spec``, ``full_reward_spec`` and
            ``full_done_spec``.
        input_spec: Composite holding ``full_action_spec`` and ``full_state_spec``.
        batch_locked: True (the default) when inputs must have the env's batch size. A
            subclass sets it to False (as a class attribute, TorchRL's convention) when its
            ``_reset``/``_step`` take any batch of inputs, e.g. a stateless env run on
            ``env.reset(params_with_batch_size_10)``: actions are then checked on their
            trailing (spec) dims only, and missing done flags take the input's batch size.
    """

    batch_locked: bool = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """Build the env; ``auto_reset=True`` (TorchRL's constructor argument) returns it inside an ``AutoResetEnv``.

        ``auto_reset=True`` says the env starts the next episode inside the step that ends
        one; ``auto_reset_replace`` (default True) is the ``replace`` argument of the
        :class:`~tdrl.envs.AutoResetTransform` put around it. Without ``auto_reset`` the
        env is built as usual.
        """
        if not kwargs.get("auto_reset", False):
            return super().__new__(cls)
        rest = {k: v for k, v in kwargs.items() if k not in ("auto_reset", "auto_reset_replace")}
        env = super().__new__(cls)
        cls.__init__(env, *args, **rest)  # the AutoResetEnv returned is not a cls: Python will not call __init__ again
        from tdrl.envs.transforms.auto_reset import _wrap_auto_reset  # (the transforms import this module)

        return _wrap_auto_reset(env, replace=kwargs.get("auto_reset_replace", True))

    def __init__(
        self,
        device: torch.device | str | None = None,
        batch_size: torch.Size | tuple | list | None = None,
    ) -> None:
        super().__init__()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.batch_size = torch.Size(batch_size or ())
        self.output_spec = Composite(
            full_observation_spec=Composite(shape=self.batch_size),
            full_reward_spec=Composite(
                reward=Unbounded(shape=(*self.batch_size, 1), device=self.device), shape=self.batch_size
            ),
            full_done_spec=_done_spec(self.batch_size, self.device),
            shape=self.batch_size,
        )
        self.input_spec = Composite(
            full_action_spec=Composite(shape=self.batch_size),
            full_state_spec=Composite(shape=self.batch_size),
            shape=self.batch_size,
        )
        self._is_reset = False
        self._action_checks: list | None = None
        self._done_checks: tuple = ()  # the done keys step requires from _step, set with _action_checks

    # --- specs ---------------------------------------------------------------------------
    def _set_spec(self, holder: Composite, slot: str, default_key: str, spec: Any, what: str) -> None:
        if isinstance(spec, TensorSpec):
            self._check_leaf_batch(default_key, spec, what)
            spec = Composite({default_key: spec}, shape=self.batch_size)
        if not isinstance(spec, Composite):
            raise TypeError(f"{type(self).__name__}.{what} must be a spec, got {type(spec).__name__}")
        if spec.shape != self.batch_size:
            spec = self._rebatch(spec, what)
        for key in spec.keys(True, True):
            self._check_leaf_batch(key, spec[key], what)
        holder[slot] = spec
        self._action_checks = None

    def _check_leaf_batch(self, key: NestedKey, leaf: TensorSpec, what: str) -> None:
        if leaf.shape[: len(self.batch_size)] != self.batch_size:
            raise ValueError(
                f"{type(self).__name__}.{what}[{key!r}] has shape {tuple(leaf.shape)}, which does not "
                f"start with the env's batch_size {tuple(self.batch_size)}. Give it shape "
                f"{tuple(self.batch_size) + tuple(leaf.shape)} (or spec.expand(*batch_size, *shape))."
            )

    def _rebatch(self, spec: Composite, what: str) -> Composite:
        if spec.shape == self.batch_size[: len(spec.shape)]:
            out = Composite(shape=self.batch_size)
            for key in spec.keys():
                sub = spec[key]
                out[key] = sub if isinstance(sub, TensorSpec) else self._rebatch(sub, what)
            return out
        raise ValueError(
            f"{type(self).__name__}.{what} has batch shape {tuple(spec.shape)}, but the env's batch_size "
            f"is {tuple(self.batch_size)}. Build the Composite with shape={tuple(self.batch_size)}."
        )

    # The full_*_spec slots hold Composites: __init__ builds them and _set_spec only stores one.
    @property
    def full_observation_spec(self) -> Composite:
        return cast(Composite, self.output_spec["full_observation_spec"])

    @full_observation_spec.setter
    def full_observation_spec(self, spec: Composite) -> None:
        self._set_spec(self.output_spec, "full_observation_spec", "observation", spec, "observation_spec")

    observation_spec = full_observation_spec

    @property
    def full_reward_spec(self) -> Composite:
        return cast(Composite, self.output_spec["full_reward_spec"])

    @full_reward_spec.setter
    def full_reward_spec(self, spec: TensorSpec | Composite) -> None:
        self._set_spec(self.output_spec, "full_reward_spec", "reward", spec, "reward_spec")

    @property
    def reward_spec(self) -> TensorSpec | Composite:
        """The reward's spec (the Composite when there are several rewards)."""
        full = self.full_reward_spec
        keys = full.keys(True, True)
        return full[keys[0]] if len(keys) == 1 else full

    @reward_spec.setter
    def reward_spec(self, spec: TensorSpec | Composite) -> None:
        self.full_reward_spec = spec

    @property
    def full_done_spec(self) -> Composite:
        return cast(Composite, self.output_spec["full_done_spec"])

    @full_done_spec.setter
    def full_done_spec(self, spec: TensorSpec | Composite) -> None:
        if isinstance(spec, TensorSpec):
            spec = Composite({k: spec.clone() for k in DONE_KEYS}, shape=self.batch_size)
        self._set_spec(self.output_spec, "full_done_spec", "done", spec, "done_spec")

    done_spec = full_done_spec

    @property
    def full_action_spec(self) -> Composite:
        return cast(Composite, self.input_spec["full_action_spec"])

    @full_action_spec.setter
    def full_action_spec(self, spec: TensorSpec | Composite) -> None:
        self._set_spec(self.input_spec, "full_action_spec", "action", spec, "action_spec")

    @property
    def action_spec(self) -> TensorSpec | Composite:
        """The action's spec (the Composite when there are several action entries)."""
        full = self.full_action_spec
        keys = full.keys(True, True)
        return full[keys[0]] if len(keys) == 1 else full

    @action_spec.setter
    def action_spec(self, spec: TensorSpec | Composite) -> None:
        self.full_action_spec = spec

    @property
    def action_spec_unbatched(self) -> TensorSpec | Composite:
        """The action spec of one sub-env, i.e. ``action_spec`` without the batch dims.

        Use it for a policy's bounds (e.g. ``TanhNormal``'s ``low``/``high``) so that the
        policy also works on minibatches whose shape is not the env's batch size.
        """
        return self.action_spec.drop_leading_dims(self.batch_dims)

    @property
    def full_action_spec_unbatched(self) -> Composite:
        return self.full_action_spec.drop_leading_dims(self.batch_dims)

    @property
    def observation_spec_unbatched(self) -> Composite:
        return self.full_observation_spec.drop_leading_dims(self.batch_dims)

    @property
    def full_state_spec(self) -> Composite:
        return cast(Composite, self.input_spec["full_state_spec"])

    @full_state_spec.setter
    def full_state_spec(self, spec: Composite) -> None:
        self._set_spec(self.input_spec, "full_state_spec", "state", spec, "state_spec")

    state_spec = full_state_spec

    @property
    def action_keys(self) -> list:
        return self.full_action_spec.keys(True, True)

    @property
    def action_key(self) -> NestedKey:
        return self.action_keys[0]

    @property
    def reward_keys(self) -> list:
        return self.full_reward_spec.keys(True, True)

    @property
    def reward_key(self) -> NestedKey:
        return self.reward_keys[0]

    @property
    def done_keys(self) -> list:
        return self.full_done_spec.keys(True, True)

    @property
    def observation_keys(self) -> list:
        return self.full_observation_spec.keys(True, True)

    @property
    def batch_dims(self) -> int:
        return len(self.batch_size)

    # --- the API ---------------------------------------------------------------------------
    def reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        """Reset the env and return the first step's TensorDict.

        Args:
            tensordict: optional input. For a batched env, its ``"_reset"`` entry (bool,
                shape ``[*B, 1]``) selects the sub-envs to reset; the others keep the
                values ``tensordict`` holds. Other root entries (e.g. a policy's recurrent
                state) are carried over.
            **kwargs: passed to ``_reset``.

        Returns:
            A TensorDict of batch size ``env.batch_size`` with the observation and done flags:
            ``tensordict`` itself, updated in place, when one was given without a ``"_reset"``
            mask or a ``"next"`` entry (as in TorchRL: ``env.reset(td) is td``).
        """
        mask = None
        if tensordict is not None:
            mask = tensordict.get("_reset", None)
        out = self._reset(tensordict, **kwargs)
        if type(out) is not TensorDict and not isinstance(out, TensorDictBase):
            raise TypeError(_RESET_RETURNED.format(env=type(self).__name__, got=_shown(out)))
        leading = out.batch_size[: max(0, out.batch_dims - self.batch_dims)]  # a non-batch-locked env's own batch
        for key in self.done_keys:
            if td_read(out, key) is None:
                out.set(key, self.full_done_spec[key].zero(leading))  # [*B, 1], or [*B, n_agents, 1] in a group
        if tensordict is not None:
            if mask is not None and self.batch_size and not bool(mask.all()):
                out = self._keep_unreset(out, tensordict, mask)
            action_keys = self.action_keys
            for key in tensordict.keys():
                if key not in ("next", "_reset") and key not in out.keys() and key not in action_keys:
                    out.set(key, tensordict.get(key))
        if not self._is_reset:  # nn.Module.__setattr__ is slow: resets are on the collectors' hot path
            self._is_reset = True
        if _validation.outputs:
            self._validate_outputs(out, "reset", (self.full_observation_spec, self.full_done_spec), ())
        if (
            tensordict is not None
            and mask is None
            and "next" not in tensordict.keys()
            and tensordict.batch_size == out.batch_size
            and not tensordict.is_locked
        ):
            return tensordict.update(out)  # TorchRL's env.reset(td) fills td in place and returns it
        return out

    def _keep_unreset(self, out: TensorDictBase, old: TensorDictBase, mask: torch.Tensor) -> TensorDictBase:
        for key in out.keys(True, True):
            if key in old.keys(True, True):
                new_v, old_v = out.get(key), old.get(key)
                m = mask.reshape(*mask.shape[: self.batch_dims], *([1] * (new_v.ndim - self.batch_dims)))
                out.set(key, torch.where(m, new_v, old_v))
        return out

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

    def step(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Apply ``tensordict``'s action and write the result under ``"next"``.

        Args:
            tensordict: the current step, holding the action (see ``action_spec``).

        Returns:
            ``tensordict``, with ``"next"`` set to the next observation, reward and done flags.

        Raises:
            TypeError: when ``tensordict`` is not a TensorDict, or ``_step`` returns none.
            RuntimeError: when the env was never reset.
            KeyError: when the action entry is missing, or ``_step`` wrote no done flag.
            ValueError: when the action has the wrong shape or dtype.
        """
        if type(tensordict) is not TensorDict and not isinstance(tensordict, TensorDictBase):
            raise TypeError(
                _NOT_A_TENSORDICT.format(env=type(self).__name__, got=_shown(tensordict), key=self.action_key)
            )
        if not self._is_reset:
            raise RuntimeError(_NOT_RESET.format(env=type(self).__name__))
        checks = self._action_checks or self._prepare_action_checks()
        for key, shape, dtype, castable, exact in checks:
            action = tensordict.get(key, None)
            if action is None:
                raise KeyError(
                    _NO_ACTION.format(env=type(self).__name__, key=key, keys=sorted(map(str, tensordict.keys())))
                )
            if action.shape != shape and (self.batch_locked or action.shape[action.ndim - len(shape) :] != shape):
                raise ValueError(
                    _BAD_ACTION_SHAPE.format(
                        env=type(self).__name__,
                        key=key,
                        actual=tuple(action.shape),
                        expected=tuple(shape),
                        batch=tuple(self.batch_size),
                        spec=tuple(shape[self.batch_dims :]),
                    )
                )
            if action.dtype != dtype:
                if not castable or (dtype.is_floating_point and not action.dtype.is_floating_point):
                    raise ValueError(
                        _BAD_ACTION_DTYPE.format(env=type(self).__name__, key=key, actual=action.dtype, expected=dtype)
                    )
                converted = action.to(dtype) if exact is None else exact.cast(action, dtype)
                if converted is None:  # only a _ZeroOneCast refuses
                    raise ValueError(self._zero_one_message(key, action, dtype, cast(_ZeroOneCast, exact)))
                tensordict.set(key, converted)
        if _validation.actions:
            self._validate_actions(tensordict)
        next_td = self._step(tensordict)
        if type(next_td) is not TensorDict and not isinstance(next_td, TensorDictBase):
            raise TypeError(_STEP_RETURNED.format(env=type(self).__name__, got=_shown(next_td)))
        for key in self._done_checks:
            if td_read(next_td, key) is None:
                _complete_done_flags(next_td, self.done_keys, type(self).__name__)
                break
        if _validation.outputs:
            specs = (self.full_observation_spec, self.full_reward_spec, self.full_done_spec)
            self._validate_outputs(next_td, "step", specs, ("next",))
        tensordict.set("next", next_td)
        return tensordict

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

    def step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Step, then build the root of the following step, resetting the sub-envs that are done.

        Returns:
            ``(tensordict, next_root)``: the stepped input (with ``"next"``) and the
            TensorDict to feed the policy at the following step.
        """
        tensordict = self.step(tensordict)
        return tensordict, self._next_root(tensordict)

    def _next_root(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The root of the step after ``tensordict`` (already stepped), done sub-envs reset."""
        root = step_mdp(tensordict, reward_keys=self.reward_keys)
        done = root.get("done")
        if done.any():
            if self.batch_size:
                root.set("_reset", done.clone())
            root = self.reset(root)
        return root

    def rand_action(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Write a random action drawn from the action spec into ``tensordict``."""
        if tensordict is None:
            tensordict = TensorDict({}, batch_size=self.batch_size, device=self.device)
        leading = () if self.batch_locked else tensordict.batch_size[: max(0, tensordict.batch_dims - self.batch_dims)]
        for key in self.action_keys:
            tensordict.set(key, self.full_action_spec[key].rand(leading))
        return tensordict

    def rand_step(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Step with a random action (resetting first when ``tensordict`` is None)."""
        if tensordict is None:
            tensordict = self.reset()
        return self.step(self.rand_action(tensordict))

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seed the env; returns the next seed to use for another env (``seed + 1``)."""
        self._set_seed(seed)
        if seed is None:
            return None
        return int(seed) + 1

    def fake_tensordict(self) -> TensorDictBase:
        """A zero-filled TensorDict with every entry the env reads and writes, ``"next"`` included."""
        root = self.full_observation_spec.zero()
        root.update(self.full_done_spec.zero())
        root.update(self.full_state_spec.zero())
        root.update(self.full_action_spec.zero())
        nxt = self.full_observation_spec.zero()
        nxt.update(self.full_done_spec.zero())
        nxt.update(self.full_reward_spec.zero())
        root.set("next", nxt)
        return root

    def append_transform(self, transform: Any) -> Any:
        """Wrap this env and ``transform`` into a new ``TransformedEnv`` and return it (TorchRL's).

        The env itself is left as it is; keep using the returned env. On a ``TransformedEnv``
        the transform is appended in place and the same env is returned.

        Args:
            transform: a ``Transform`` (or a ``Compose``).

        Returns:
            ``TransformedEnv(self, transform)``.

        Examples:
            >>> from tdrl.envs import StepCounter
            >>> from tdrl.testing import CountingEnv
            >>> env = CountingEnv().append_transform(StepCounter(max_steps=3))
            >>> type(env).__name__, env.rollout(10).shape
            ('TransformedEnv', torch.Size([3]))
        """
        from tdrl.envs.transforms.env import TransformedEnv

        return TransformedEnv(self, transform)

    def close(self) -> None:
        """Release the simulator's resources. Safe to call twice."""
        self._is_reset = False

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # --- rollouts --------------------------------------------------------------------------
    def rollout(
        self,
        max_steps: int,
        policy: Callable[[TensorDictBase], TensorDictBase] | None = None,
        callback: Callable[[EnvBase, TensorDictBase], Any] | None = None,
        auto_reset: bool = True,
        break_when_any_done: bool = True,
        tensordict: TensorDictBase | None = None,
        return_contiguous: bool = True,
        break_when_all_done: bool = False,
        set_truncated: bool = False,
    ) -> TensorDictBase:
        """Run up to ``max_steps`` steps and stack them along a new last batch dim.

        Args:
            max_steps: the number of steps.
            policy: reads the root and writes the action; ``None`` draws random actions
                from the action spec.
            callback: called as ``callback(env, td)`` after each step.
            auto_reset: reset before the first step (else ``tensordict`` is the start).
            break_when_any_done: stop after the first step where any sub-env is done; when
                False, done sub-envs are reset and the rollout goes on.
            tensordict: the starting TensorDict (with ``auto_reset=False``), or the input
                of the first reset.
            return_contiguous: kept for TorchRL compatibility; the result is always one
                tensor per key.
            break_when_all_done: stop when every sub-env is done.
            set_truncated: mark the last step as truncated (and done) if it is not done.

        Returns:
            A TensorDict of batch size ``[*env.batch_size, steps]`` with a ``"next"`` entry.

        Raises:
            ValueError: ``max_steps`` < 1, or ``auto_reset=False`` without a tensordict.
        """
        if max_steps < 1:
            raise ValueError(f"rollout: max_steps must be >= 1, got {max_steps}.")
        if auto_reset:
            td = self.reset(tensordict)
        elif tensordict is None:
            raise ValueError("rollout(auto_reset=False) needs tensordict= the step to start from (e.g. env.reset()).")
        else:
            td = tensordict
        fast = None
        # without batch dims "all done" is "done"; with them the fast paths, which stop on any, do not apply
        all_done = break_when_all_done and not break_when_any_done and bool(self.batch_size)
        if policy is None and callback is None and not set_truncated and not _validation.outputs and not all_done:
            # steps without env.step's checks
            fast = self._rollout_fast(td, max_steps, break_when_any_done or break_when_all_done)
        if fast is not None:
            return fast
        if policy is not None:
            from tdrl.modules._lean import lean_policy  # (tdrl.modules imports tdrl.envs)
            from tdrl.modules.rnn import check_recurrent_primers

            check_recurrent_primers(policy, self, "rollout")
            policy = lean_policy(policy)  # the same calls, without tensordict's per-call dispatch
        return self._rollout_loop(
            td, max_steps, policy, callback, break_when_any_done, break_when_all_done, set_truncated
        )

    def _rollout_fast(self, td: TensorDictBase, max_steps: int, break_when_any_done: bool) -> TensorDictBase | None:
        """Backends may run a policy-free rollout without per-step TensorDicts; None = not supported."""
        return None

    def _rollout_loop(self, td, max_steps, policy, callback, break_when_any_done, break_when_all_done, set_truncated):
        out = None
        writers: list = []
        # time goes after the data's batch dims: the env's, or any a non-batch-locked env is given
        time_dim = self.batch_dims if self.batch_locked else td.batch_dims
        steps = max_steps
        for t in range(max_steps):
            td = policy(td) if policy is not None else self.rand_action(td)
            preset = td.get("next", None)  # what the policy wrote for the next step (its recurrent state)
            td = self.step(td)
            if preset is not None:
                td.get("next").update(preset)
            if callback is not None:
                callback(self, td)
            if out is None:
                out = td.unsqueeze(time_dim).expand(*td.batch_size[:time_dim], max_steps).clone()
                writers = [(key, out.get(key)) for key in td.keys(True, True)]
            if not self._write_step(writers, td, t, time_dim):
                out[(slice(None),) * time_dim + (t,)] = td
            done = td.get(("next", "done"))
            if (break_when_any_done and done.any()) or (break_when_all_done and done.all()):
                steps = t + 1
                break
            if t < max_steps - 1:
                if break_when_any_done:
                    td = step_mdp(td, reward_keys=self.reward_keys)
                else:
                    td = self._next_root(td)
        out = cast(TensorDictBase, out)  # rollout checked max_steps >= 1, so the first step built it
        if steps < max_steps:
            out = out[(slice(None),) * time_dim + (slice(0, steps),)].clone()
        if set_truncated:
            last = (slice(None),) * time_dim + (-1,)
            for key in ("truncated", "done"):
                if ("next", key) in out.keys(True, True):
                    out.get(("next", key))[last] = True
        return out

    @staticmethod
    def _write_step(writers: list, td: TensorDictBase, t: int, time_dim: int) -> bool:
        leaves = dict(td.items(True, True))  # one walk of the tree, not one nested get per leaf
        if len(writers) != len(leaves):
            return False
        for key, dst in writers:
            src = leaves.get(key)
            if src is None or src.shape != dst.shape[:time_dim] + dst.shape[time_dim + 1 :]:
                return False
            dst.select(time_dim, t).copy_(src)
        return True

    # --- to implement --------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        raise NotImplementedError(f"{type(self).__name__} must implement _reset(tensordict) -> TensorDict")

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise NotImplementedError(f"{type(self).__name__} must implement _step(tensordict) -> TensorDict")

    def _set_seed(self, seed: int | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_seed(seed)")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_size={tuple(self.batch_size)}, device={self.device},\n"
            f"  observation_spec={self.full_observation_spec},\n  action_spec={self.action_spec},\n"
            f"  reward_spec={self.reward_spec})"
        )
