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
    """c_t at every step, from the gates: all steps' gates in one product, then the cheap scan."""
    w_ih, w_hh = params[0], params[1]
    previous = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)  # h_{t-1}
    gates = x @ w_ih.T + previous @ w_hh.T
    if len(params) == 4:
        gates = gates + params[2] + params[3]
    i, f, g, o = gates.chunk(4, dim=2)
    i, f, g = i.sigmoid(), f.sigmoid(), g.tanh()
    c, states = c0, []
    for t in range(x.shape[1]):
        c = f[:, t] * c + i[:, t] * g[:, t]
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
