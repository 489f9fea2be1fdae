"""Recurrent layers whose hidden and cell state at every time step are layers of their own.

``nn.LSTM`` returns only the last layer's hidden states, and the cell state at no step. So
galleria runs each LSTM, GRU or RNN one layer at a time with the module's own weights (the
same fused kernel, exact), and passes each layer's states through taps that hooks can watch:
``lstm.hidden.0`` is layer 0's h_t at every step, ``lstm.cell.0`` its c_t, as [batch, time, units].
"""
from __future__ import annotations

import torch
from torch import _VF, nn


class StateTap(nn.Identity):
    """Where one layer's state passes at every step, batch first: [batch, time, units]."""


class UnrolledRecurrent(nn.Module):
    """Drop-in for an ``nn.LSTM``/``nn.GRU``/``nn.RNN``: same inputs, same outputs, states exposed."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        self.rnn = rnn
        self.hidden = nn.ModuleList(StateTap() for _ in range(rnn.num_layers))
        if isinstance(rnn, nn.LSTM):
            self.cell = nn.ModuleList(StateTap() for _ in range(rnn.num_layers))

    def forward(self, input, hx=None):
        rnn = self.rnn
        if not isinstance(input, torch.Tensor) or input.dim() != 3:  # packed or unbatched: as it was
            return rnn(input, hx)
        lstm = isinstance(rnn, nn.LSTM)
        x = input if rnn.batch_first else input.transpose(0, 1)
        zeros = x.new_zeros(rnn.num_layers, x.shape[0], rnn.hidden_size)
        h0, c0 = (hx if hx is not None else (zeros, zeros)) if lstm else (hx if hx is not None else zeros, None)
        finals_h, finals_c = [], []
        for k in range(rnn.num_layers):
            params = [getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                      if rnn.bias or name.startswith("weight")]
            if lstm:
                out, h, c = _VF.lstm(x, (h0[k:k + 1], c0[k:k + 1]), params, rnn.bias, 1, 0.0, False, False, True)
                self.cell[k](_cell_states(x, out, h0[k], c0[k], params))
                finals_c.append(c)
            else:
                run = {"GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}[rnn.mode]
                out, h = run(x, h0[k:k + 1], params, rnn.bias, 1, 0.0, False, False, True)
            finals_h.append(h)
            x = self.hidden[k](out)
            if rnn.training and rnn.dropout and k + 1 < rnn.num_layers:
                x = nn.functional.dropout(x, rnn.dropout, True)
        output = x if rnn.batch_first else x.transpose(0, 1)
        h_n = torch.cat(finals_h)
        return (output, (h_n, torch.cat(finals_c))) if lstm else (output, h_n)


def _cell_states(x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, params) -> torch.Tensor:
    """c_t at every step, from the gates: all steps' gates in one product, then the cheap scan
    (time first, so each step reads contiguous rows)."""
    w_ih, w_hh = params[0], params[1]
    previous = torch.cat([h0.unsqueeze(0), out.transpose(0, 1)[:-1]])  # h_{t-1}, [time, batch, units]
    gates = torch.addmm(params[2] + params[3], x.transpose(0, 1).reshape(-1, x.shape[2]), w_ih.T) \
        if len(params) == 4 else x.transpose(0, 1).reshape(-1, x.shape[2]) @ w_ih.T
    gates = gates.view(x.shape[1], x.shape[0], -1).add_((previous.reshape(-1, previous.shape[2]) @ w_hh.T)
                                                        .view(x.shape[1], x.shape[0], -1))
    i, f, g, _ = gates.chunk(4, dim=2)
    update = i.sigmoid().mul_(g.tanh())  # i_t * g_t
    f = f.sigmoid()
    c, states = c0, []
    for t in range(x.shape[1]):
        c = torch.addcmul(update[t], f[t], c)
        states.append(c)
    return torch.stack(states, dim=1)


def unroll_recurrent(module: nn.Module) -> nn.Module:
    """Replace every plain (one-direction, unprojected) recurrent layer inside ``module``."""
    if _unrollable(module):
        return UnrolledRecurrent(module)
    for name, child in list(module.named_children()):
        if _unrollable(child):
            setattr(module, name, UnrolledRecurrent(child))
        elif not isinstance(child, UnrolledRecurrent):
            unroll_recurrent(child)
    return module


def _unrollable(module: nn.Module) -> bool:
    return (type(module) in (nn.LSTM, nn.GRU, nn.RNN) and not module.bidirectional
            and not getattr(module, "proj_size", 0))
