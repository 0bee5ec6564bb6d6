"""Networks for a group of agents: one MLP per agent or one shared, on each agent's input or on all of them.

:class:`MultiAgentMLP` maps ``[*B, n_agents, n_agent_inputs]`` to ``[*B, n_agents,
n_agent_outputs]``. With ``share_params=False`` every agent has its own weights, stored
stacked (``[n_agents, ...]`` per parameter, TorchRL's layout, so state dicts load across);
with ``centralized=True`` every agent reads the inputs of all agents (a centralised critic).

Independent weights run as one batched matrix product per layer (``torch.baddbmm`` over
the agents), which on CPU costs less per call than ``torch.vmap`` over a functional
call; an MLP with layers other than ``nn.Linear`` and parameter-free activations runs
through ``torch.vmap``.

Examples:
    >>> import torch
    >>> mlp = MultiAgentMLP(3, 2, n_agents=4, centralized=False, share_params=False, depth=1, num_cells=16)
    >>> mlp(torch.zeros(10, 4, 3)).shape
    torch.Size([10, 4, 2])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDict
from torch import nn

from tdrl.modules.models.conv import ConvNet
from tdrl.modules.models.mlp import MLP

__all__ = ["MultiAgentMLP", "MultiAgentConvNet"]


class _ParameterTree(nn.Module):
    """The agents' parameters by layer index (``params.0.weight``: TorchRL's state-dict keys).

    Plain ``nn.Parameter`` s in sub-modules named after the MLP's layers, so that the losses'
    target parameters and functional calls swap them like any module's. Indexing with a
    key tuple (``params["0", "weight"]``) reads one, as on TorchRL's ``TensorDictParams``.
    """

    def __init__(self, tree: TensorDict) -> None:
        super().__init__()
        for key in tree.keys(True, True):
            *path, name = key if isinstance(key, tuple) else (key,)
            owner: nn.Module = self
            for part in path:
                child = dict(owner.named_children()).get(part)
                if child is None:
                    child = nn.Module()
                    owner.add_module(part, child)
                owner = child
            owner.register_parameter(name, nn.Parameter(tree.get(key).detach().clone()))

    def __getitem__(self, key: str | tuple[str, ...]) -> torch.Tensor:
        return self.get_parameter(key if isinstance(key, str) else ".".join(key))


def _refuse_buffers(owner: str, nets: Sequence[nn.Module], example: str, instead: str) -> None:
    if any(True for net in nets for _ in net.buffers()):
        raise ValueError(
            f"{owner}: layers with buffers (e.g. norm_class={example}) are not supported; "
            f"use a norm without running statistics ({instead}) or none."
        )


def _hold_parameters(owner: Any, nets: Sequence[nn.Module]) -> None:
    """Registers the agents' parameters on ``owner`` in TorchRL's layout and sets its call template.

    One net (shared parameters) or one per agent, stacked on a leading agent dim. With
    ``owner.use_td_params`` they live in ``owner.params`` (state-dict keys ``params.0.weight``)
    and ``owner._template`` is a parameter-free copy of the structure; else in
    ``owner._empty_net`` (keys ``_empty_net.0.weight``), which is also the template.
    """
    if owner.use_td_params:
        tree = TensorDict.from_module(nets[0]) if owner.share_params else TensorDict.from_modules(*nets)
        owner.params = _ParameterTree(tree)
        # the structure only: the parameters live in owner.params (not registered, so not in state_dict)
        object.__setattr__(owner, "_template", copy.deepcopy(nets[0]).to("meta"))
    else:
        owner._empty_net = nets[0]
        if not owner.share_params:  # the stacked parameters replace the first net's own (TorchRL's layout)
            stacked = TensorDict.from_modules(*nets)
            for key in stacked.keys(True, True):
                layer = owner._empty_net.get_submodule(".".join(key[:-1]))
                delattr(layer, key[-1])
                layer.register_parameter(key[-1], nn.Parameter(stacked.get(key).detach().clone()))
        object.__setattr__(owner, "_template", owner._empty_net)
    _find_slots(owner)


def _find_slots(owner: Any) -> None:
    holder = owner.params if owner.use_td_params else owner._empty_net
    owner._slots = [
        (name, holder.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2])
        for name, _ in holder.named_parameters()
    ]


_MISSING = (
    "MultiAgentMLP needs {name}=True or False (TorchRL has no default either): {what}. "
    "E.g. MultiAgentMLP(obs_dim, act_dim, n_agents, centralized=False, share_params=True)."
)
_BAD_INPUT = (
    "MultiAgentMLP expects inputs of shape [*B, n_agents={n_agents}, n_agent_inputs={n_in}], got {shape}. "
    "Pass the group's entry (e.g. ('agents', 'observation')), with the agents on dim -2."
)


class MultiAgentMLP(nn.Module):
    """An MLP per agent (or one shared), reading each agent's input or all agents' inputs.

    Args:
        n_agent_inputs: the size of one agent's input.
        n_agent_outputs: the size of one agent's output.
        n_agents: the number of agents (the input's dim -2).

    Keyword Args:
        centralized: each agent reads the inputs of all agents (``n_agents *
            n_agent_inputs`` features); else its own only. Required. ``centralised`` is
            accepted too.
        share_params: one MLP for all agents (homogeneous agents); else one per agent.
            Required.
        device: where the parameters live.
        depth: the number of hidden layers (TorchRL's :class:`~tdrl.modules.MLP` argument).
        num_cells: hidden sizes, an int or one per hidden layer.
        activation_class: the activation after each hidden layer (default ``nn.Tanh``).
        use_td_params: keep the parameters in ``self.params`` (state-dict keys
            ``params.0.weight``, ...; ``params["0", "weight"]`` reads one); else in the layers
            of ``self._empty_net`` (keys ``_empty_net.0.weight``, ...). Both are TorchRL's
            state-dict layouts. (TorchRL's ``self.params`` is a ``TensorDictParams``; ours is a
            plain module tree, so that losses swap in target parameters as for any network.)
        **kwargs: passed to :class:`~tdrl.modules.MLP` (``activate_last_layer``,
            ``norm_class``, ``dropout``, ...).

    Raises:
        TypeError: ``centralized`` or ``share_params`` not given.
        ValueError: ``n_agent_inputs`` is ``None`` (lazy sizes are not supported: give the size),
            or an input whose dim -2 is not ``n_agents``.

    Differences from TorchRL: ``n_agent_inputs`` must be given (no lazy first layer).

    Examples:
        A centralised critic with one set of weights per agent:

        >>> import torch
        >>> critic = MultiAgentMLP(
        ...     n_agent_inputs=4, n_agent_outputs=1, n_agents=3,
        ...     centralized=True, share_params=False, depth=2, num_cells=32,
        ... )
        >>> critic.params["0", "weight"].shape  # one [32, 3 * 4] weight per agent
        torch.Size([3, 32, 12])
        >>> critic(torch.randn(5, 3, 4)).shape
        torch.Size([5, 3, 1])
    """

    _template: MLP  # the layers' structure (the parameters are passed at each call)
    _slots: list[tuple[str, nn.Module, str]]  # (name, owning layer, attribute) of each parameter

    def __init__(
        self,
        n_agent_inputs: int | None,
        n_agent_outputs: int,
        n_agents: int,
        *,
        centralized: bool | None = None,
        share_params: bool | None = None,
        device: torch.device | str | None = None,
        depth: int | None = None,
        num_cells: Sequence[int] | int | None = None,
        activation_class: type[nn.Module] | None = nn.Tanh,
        use_td_params: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        centralized = kwargs.pop("centralised", centralized)
        if centralized is None:
            raise TypeError(_MISSING.format(name="centralized", what="whether each agent reads all agents' inputs"))
        if share_params is None:
            raise TypeError(_MISSING.format(name="share_params", what="whether the agents share one network"))
        if n_agent_inputs is None:
            raise ValueError(
                "MultiAgentMLP: n_agent_inputs=None (a lazy input size) is not supported; pass the size of one "
                "agent's input, e.g. env.observation_spec['agents', 'observation'].shape[-1]."
            )
        if n_agents < 1:
            raise ValueError(f"MultiAgentMLP: n_agents must be >= 1, got {n_agents}.")
        kwargs.pop("agent_dim", None)  # TorchRL's base-class argument: always -2 for an MLP
        kwargs.pop("vmap_randomness", None)
        self.n_agents = n_agents
        self.n_agent_inputs = n_agent_inputs
        self.n_agent_outputs = n_agent_outputs
        self.share_params = share_params
        self.centralized = centralized
        self.num_cells = num_cells
        self.activation_class = activation_class
        self.depth = depth
        self.agent_dim = -2
        self.use_td_params = use_td_params
        in_features = n_agent_inputs * n_agents if centralized else n_agent_inputs
        mlp_kwargs = dict(
            in_features=in_features,
            out_features=n_agent_outputs,
            depth=depth,
            num_cells=num_cells,
            device=device,
            **kwargs,
        )
        if activation_class is not None:
            mlp_kwargs["activation_class"] = activation_class
        self._mlp_kwargs = mlp_kwargs
        nets = [MLP(**mlp_kwargs) for _ in range(1 if share_params else n_agents)]
        _refuse_buffers("MultiAgentMLP", nets, "nn.BatchNorm1d", "nn.LayerNorm")
        # the layers' plan, fixed once: plain Linear layers and parameter-free activations run batched
        self._plan = [(str(i), type(layer) is nn.Linear) for i, layer in enumerate(nets[0])]
        self._batched = all(
            linear or not any(True for _ in layer.parameters()) for (_, linear), layer in zip(self._plan, nets[0])
        )
        _hold_parameters(self, nets)

    def _weights(self) -> dict[str, torch.Tensor]:
        """``{"0.weight": tensor, ...}``: stacked ``[n_agents, ...]`` unless shared.

        Read from the layers at each call, so that tensors swapped in (a loss's target
        parameters, ``TensorDict.to_module``) are used.
        """
        return {name: getattr(owner, attr) for name, owner, attr in self._slots}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``[*B, n_agents, n_agent_inputs]`` (several inputs: concatenated) to ``[*B, n_agents, n_agent_outputs]``."""
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1)
        if x.ndim < 2 or x.shape[-2] != self.n_agents or x.shape[-1] != self.n_agent_inputs:
            raise ValueError(_BAD_INPUT.format(n_agents=self.n_agents, n_in=self.n_agent_inputs, shape=tuple(x.shape)))
        if self.centralized:
            x = x.flatten(-2, -1)
        weights = self._weights()
        if self.share_params:
            out = self._shared(x, weights) if self._batched else self._call(weights, x)
            if self.centralized:
                out = out.unsqueeze(-2).expand(*out.shape[:-1], self.n_agents, out.shape[-1])
            return out
        if self._batched:
            return self._per_agent_batched(x, weights)
        call = torch.vmap(
            self._call, in_dims=(0, None if self.centralized else -2), out_dims=-2, randomness="different"
        )
        return call(weights, x)

    def _call(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self._template, weights, (x,))

    def _shared(self, h: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        for (index, linear), layer in zip(self._plan, self._template):
            if linear:
                h = nn.functional.linear(h, weights[index + ".weight"], weights.get(index + ".bias"))
            else:
                h = layer(h)
        return h

    def _per_agent_batched(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each agent's MLP as one ``baddbmm`` per layer, the agents on dim 0."""
        n = self.n_agents
        if self.centralized:
            batch = x.shape[:-1]
            h = x.reshape(-1, x.shape[-1])  # [N, n * n_in], read by every agent
        else:
            batch = x.shape[:-2]
            h = x.reshape(-1, n, x.shape[-1]).transpose(0, 1)  # [n, N, n_in]
        shared_input = self.centralized
        for (index, linear), layer in zip(self._plan, self._template):
            if not linear:
                h = layer(h)
                continue
            weight = weights[index + ".weight"]  # [n, out, in]
            bias = weights.get(index + ".bias")
            if shared_input:  # one matmul for all agents: [N, in] @ [in, n * out]
                h = (h @ weight.reshape(-1, weight.shape[-1]).T).reshape(h.shape[0], n, -1).transpose(0, 1)
                if bias is not None:
                    h = h + bias.unsqueeze(1)
                shared_input = False
            elif bias is not None:
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            else:
                h = torch.bmm(h, weight.transpose(1, 2))
        return h.transpose(0, 1).reshape(*batch, n, h.shape[-1])

    def reset_parameters(self) -> None:
        """Draw new parameters for every agent, with each layer's own initialisation."""
        with torch.no_grad():
            weights = self._weights()
            for i in range(1 if self.share_params else self.n_agents):
                fresh = MLP(**self._mlp_kwargs)
                for name, value in fresh.named_parameters():
                    target = weights[name]
                    (target if self.share_params else target[i]).copy_(value)

    def extra_repr(self) -> str:
        return (
            f"n_agents={self.n_agents}, share_params={self.share_params}, centralized={self.centralized}, "
            f"agent_dim={self.agent_dim}"
        )


_BAD_IMAGE = (
    "MultiAgentConvNet expects inputs of shape [*B, n_agents={n_agents}, channels={channels}, height, width], "
    "got {shape}. Pass the group's image entry (e.g. ('agents', 'pixels')) with the agents on dim -4 and "
    "channels first (ToTensorImage moves them)."
)


class _ConvNetSizeFromState:
    """Load-state-dict hook of a lazy :class:`MultiAgentConvNet`: sizes its first layer from the state's."""

    def __call__(self, module: MultiAgentConvNet, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if module.in_features is not None:
            return
        where = "params." if module.use_td_params else "_empty_net."
        weight = state_dict.get(f"{prefix}{where}0.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim >= 3:
            module._materialize(weight.shape[-3] // (module.n_agents if module.centralized else 1))


class MultiAgentConvNet(nn.Module):
    """A :class:`~tdrl.modules.ConvNet` per agent (or one shared), on each agent's image or on all of them.

    Maps ``[*B, n_agents, C, H, W]`` to ``[*B, n_agents, features]``. With
    ``centralized=True`` each agent reads the images of all agents, stacked on the channels
    (``n_agents * C`` input channels). With ``share_params=False`` every agent has its own
    weights, stored stacked (``[n_agents, ...]`` per parameter) under the same state-dict keys
    as TorchRL's (``params.0.weight``, ...), so state dicts load across.

    Args:
        n_agents: the number of agents (the input's dim -4).
        centralized: each agent reads all agents' images; else its own only. Required.
        share_params: one network for all agents; else one per agent. Required.

    Keyword Args:
        in_features: the channels of one agent's image; ``None`` (the default, as in
            TorchRL) reads them from the first input, or from the first state dict loaded,
            whichever comes first; the first layer's parameters are created then, in place
            (an optimizer built before holds them).
        device: where the parameters live.
        num_cells: output channels of each conv layer (default ``[32, 32, 32]``).
        kernel_sizes: kernel size(s) (default 5).
        strides: stride(s) (default 2).
        paddings: padding(s) (default 0).
        activation_class: the activation after each conv (default ``nn.ELU``).
        use_td_params: keep the parameters in ``self.params`` (keys ``params.0.weight``);
            else in ``self._empty_net`` (keys ``_empty_net.0.weight``). Both are TorchRL's layouts.
        **kwargs: passed to :class:`~tdrl.modules.ConvNet` (``depth``, ``norm_class``,
            ``aggregator_class``, ...). ``centralised`` is accepted for ``centralized``.

    Raises:
        TypeError: ``centralized`` or ``share_params`` not given.
        ValueError: ``n_agents`` < 1, layers with buffers (``nn.BatchNorm2d``), or an input
            that is not ``[*B, n_agents, C, H, W]`` (the message names the expected shape).

    Examples:
        Independent weights, each agent reading its own 3-channel image:

        >>> import torch
        >>> cnn = MultiAgentConvNet(
        ...     n_agents=4, centralized=False, share_params=False, in_features=3, num_cells=[8, 8], kernel_sizes=3
        ... )
        >>> cnn.params["0", "weight"].shape  # one [8, 3, 3, 3] kernel per agent
        torch.Size([4, 8, 3, 3, 3])
        >>> cnn(torch.zeros(5, 4, 3, 16, 16)).shape  # [*B, n_agents, 8 * 3 * 3]
        torch.Size([5, 4, 72])

        A centralised, shared network with a lazy first layer:

        >>> critic = MultiAgentConvNet(4, centralized=True, share_params=True, num_cells=[8], kernel_sizes=3)
        >>> out = critic(torch.zeros(5, 4, 3, 16, 16))
        >>> out.shape, critic.params["0", "weight"].shape  # 4 * 3 input channels
        (torch.Size([5, 4, 392]), torch.Size([8, 12, 3, 3]))
        >>> bool((out[:, 0] == out[:, 3]).all())  # one output, given to every agent
        True
    """

    _template: nn.Module  # the layers' structure (the parameters are passed at each call)
    _slots: list[tuple[str, nn.Module, str]]  # (name, owning layer, attribute) of each parameter

    def __init__(
        self,
        n_agents: int,
        centralized: bool | None = None,
        share_params: bool | None = None,
        *,
        in_features: int | None = None,
        device: torch.device | str | None = None,
        num_cells: Sequence[int] | int | None = None,
        kernel_sizes: Sequence[int | Sequence[int]] | int = 5,
        strides: Sequence[int | Sequence[int]] | int = 2,
        paddings: Sequence[int | Sequence[int]] | int = 0,
        activation_class: type[nn.Module] = nn.ELU,
        use_td_params: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        centralized = kwargs.pop("centralised", centralized)
        missing = (
            "MultiAgentConvNet needs {name}=True or False: {what}. "
            "E.g. MultiAgentConvNet(n_agents, centralized=False, share_params=True)."
        )
        if centralized is None:
            raise TypeError(missing.format(name="centralized", what="whether each agent reads all agents' images"))
        if share_params is None:
            raise TypeError(missing.format(name="share_params", what="whether the agents share one network"))
        if n_agents < 1:
            raise ValueError(f"MultiAgentConvNet: n_agents must be >= 1, got {n_agents}.")
        kwargs.pop("agent_dim", None)  # TorchRL's base-class argument: always -4 for images
        kwargs.pop("vmap_randomness", None)
        self.n_agents = n_agents
        self.centralized = centralized
        self.share_params = share_params
        self.in_features = in_features
        self.num_cells = num_cells
        self.kernel_sizes = kernel_sizes
        self.strides = strides
        self.paddings = paddings
        self.activation_class = activation_class
        self.agent_dim = -4
        self.use_td_params = use_td_params
        self._conv_kwargs = dict(
            num_cells=num_cells,
            kernel_sizes=kernel_sizes,
            strides=strides,
            paddings=paddings,
            activation_class=activation_class,
            device=device,
            **kwargs,
        )
        # a lazy input size: build with one channel, then make the first conv's parameters placeholders
        nets = self._build_nets(1 if in_features is None else in_features)
        _refuse_buffers("MultiAgentConvNet", nets, "nn.BatchNorm2d", "nn.GroupNorm")
        _hold_parameters(self, nets)
        if in_features is None:
            for name, owner, attr in self._slots:
                if name.startswith("0."):
                    delattr(owner, attr)
                    placeholder = cast(nn.Parameter, nn.UninitializedParameter())  # materialize() sets the device
                    owner.register_parameter(attr, placeholder)
            self.register_load_state_dict_pre_hook(_ConvNetSizeFromState())

    def _build_nets(self, channels: int) -> list[ConvNet]:
        in_channels = channels * self.n_agents if self.centralized else channels
        return [
            ConvNet(in_features=in_channels, **self._conv_kwargs)
            for _ in range(1 if self.share_params else self.n_agents)
        ]

    def _materialize(self, channels: int) -> None:
        """Creates the first conv's parameters for ``channels`` input channels per agent (a lazy
        network's first call), initialised as a ``Conv2d`` of that size initialises its own."""
        nets = self._build_nets(channels)
        fresh = TensorDict.from_module(nets[0]) if self.share_params else TensorDict.from_modules(*nets)
        with torch.no_grad():
            for name, owner, attr in self._slots:
                if name.startswith("0."):
                    value = fresh.get(tuple(name.split(".")))
                    placeholder = getattr(owner, attr)
                    placeholder.materialize(value.shape, device=value.device, dtype=value.dtype)
                    placeholder.copy_(value)  # now a plain Parameter (the same object: optimizers keep it)
        holder = cast(nn.Sequential, self._template if self.use_td_params else self._empty_net)
        cast(nn.Conv2d, holder[0]).in_channels = cast(nn.Conv2d, nets[0][0]).in_channels
        if self.use_td_params:
            object.__setattr__(self, "_template", copy.deepcopy(nets[0]).to("meta"))
        self.in_features = channels

    def _weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(owner, attr) for name, owner, attr in self._slots}

    def _call(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self._template, weights, (x,))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``[*B, n_agents, C, H, W]`` (several inputs: concatenated on dim -1) to ``[*B, n_agents, features]``."""
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1)
        channels = self.in_features
        if x.ndim < 4 or x.shape[-4] != self.n_agents or (channels is not None and x.shape[-3] != channels):
            raise ValueError(
                _BAD_IMAGE.format(
                    n_agents=self.n_agents, channels="C" if channels is None else channels, shape=tuple(x.shape)
                )
            )
        if channels is None:
            self._materialize(x.shape[-3])
        if self.centralized:
            x = x.flatten(-4, -3)  # [*B, n_agents * C, H, W]: every agent's channels
        weights = self._weights()
        if self.share_params:
            out = self._call(weights, x)
            if self.centralized:
                out = out.unsqueeze(-2).expand(*out.shape[:-1], self.n_agents, out.shape[-1])
            return out
        call = torch.vmap(
            self._call, in_dims=(0, None if self.centralized else -4), out_dims=-2, randomness="different"
        )
        return call(weights, x)

    def reset_parameters(self) -> None:
        """Draw new parameters for every agent, with each layer's own initialisation.

        Raises:
            RuntimeError: on a lazy network that has not been called yet (its input size is unknown).
        """
        if self.in_features is None:
            raise RuntimeError(
                "MultiAgentConvNet.reset_parameters: the first layer's input channels are not known yet; "
                "call the network once (or pass in_features) first."
            )
        nets = self._build_nets(self.in_features)
        fresh = TensorDict.from_module(nets[0]) if self.share_params else TensorDict.from_modules(*nets)
        with torch.no_grad():
            for name, value in self._weights().items():
                value.copy_(fresh.get(tuple(name.split("."))))

    def extra_repr(self) -> str:
        return (
            f"n_agents={self.n_agents}, share_params={self.share_params}, centralized={self.centralized}, "
            f"agent_dim={self.agent_dim}"
        )
