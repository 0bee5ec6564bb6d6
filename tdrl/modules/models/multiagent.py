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
from typing import Any

import torch
from tensordict import TensorDict
from torch import nn

from tdrl.modules.models.mlp import MLP

__all__ = ["MultiAgentMLP"]

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
        use_td_params: keep the parameters in ``self.params`` (a ``TensorDictParams``,
            state-dict keys ``params.0.weight``, ...); else in the layers of
            ``self._empty_net`` (keys ``_empty_net.0.weight``, ...). Both are TorchRL's layouts.
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
        if any(True for net in nets for _ in net.buffers()):
            raise ValueError(
                "MultiAgentMLP: layers with buffers (e.g. norm_class=nn.BatchNorm1d) are not supported; "
                "use a norm without running statistics (nn.LayerNorm) or none."
            )
        # the layers' plan, fixed once: plain Linear layers and parameter-free activations run batched
        self._plan = [(str(i), type(layer) is nn.Linear) for i, layer in enumerate(nets[0])]
        self._batched = all(
            linear or not any(True for _ in layer.parameters()) for (_, linear), layer in zip(self._plan, nets[0])
        )
        if use_td_params:
            self.params = (
                TensorDict.from_module(nets[0], as_module=True)
                if share_params
                else TensorDict.from_modules(*nets, as_module=True)
            )
            # the structure only: the parameters live in self.params (not registered, so not in state_dict)
            object.__setattr__(self, "_template", copy.deepcopy(nets[0]).to("meta"))
            self._keys = [(".".join(k), k) for k in self.params.keys(True, True)]
        else:
            self._empty_net = nets[0]
            if not share_params:  # the stacked parameters replace the first net's own (TorchRL's layout)
                stacked = TensorDict.from_modules(*nets)
                for key in stacked.keys(True, True):
                    layer = self._empty_net.get_submodule(".".join(key[:-1]))
                    delattr(layer, key[-1])
                    layer.register_parameter(key[-1], nn.Parameter(stacked.get(key).detach().clone()))
            object.__setattr__(self, "_template", self._empty_net)
            self._keys = []

    def _weights(self) -> dict[str, torch.Tensor]:
        """``{"0.weight": tensor, ...}``: stacked ``[n_agents, ...]`` unless shared."""
        if self.use_td_params:
            params = self.params
            return {dotted: params.get(key) for dotted, key in self._keys}
        return dict(self._empty_net.named_parameters())

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
