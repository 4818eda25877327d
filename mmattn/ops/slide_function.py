"""The autograd function of slide attention's fast path: a loop over the k*k shifts.

See :mod:`mmattn.ops.slide` for the algebra: with the k*k shifts ``s`` of the zero-padded k and
v and the kernel ``W[c, i, s]``, the logits and the output are sums over the shifts of small
(taps x head_dim) matrix products, so the k*k-expanded keys and values are never built; the
backward runs the same shift loop.
"""
import torch
import torch.nn.functional as F
from torch import Tensor


def _shift_view(xp: Tensor, s: int, ks: int, h: int, w: int) -> Tensor:
    """Shift ``s`` (cell (s // k, s % k)) of the zero-padded map: ``x[y + u - p, x + t - p]``."""
    u, t = divmod(s, ks)
    return xp[..., u:u + h, t:t + w]


def _bmm(mat: Tensor, x: Tensor) -> Tensor:
    """``mat @ x[n]`` for every n: one small matrix (m, k) shared by the batch x (N, k, L).

    An explicit bmm over the (stride-0) expanded matrix: ``torch.matmul`` of a 2-D by a batched
    tensor may first copy the big operand to a transposed layout (with (B, heads, d, H*W)
    operands that copy took two thirds of the time at detection sizes)."""
    return torch.bmm(mat.expand(x.shape[0], -1, -1), x)


class SlideAttentionFunction(torch.autograd.Function):
    """Slide attention by a loop over the k*k shifts; see the module docstring for the algebra.

    Shapes inside: heads folded into the batch, N = B * heads; q, k, v (N, d, H, W), k and v
    zero padded by k // 2; the kernel as ``wk[s]`` = (d, taps) for shift s
    (``wk[s][c, i] = weight[c*taps + i, 0, s // k, s % k]``); logits and attention
    (N, taps, H*W). The sums over channels (logits) and over taps (output) are then
    (taps, d) @ (d, H*W) and (d, taps) @ (taps, H*W) products per image and head.
    """

    @staticmethod
    def forward(ctx, q, k, v, weight, bias, rpb, scale):
        b, heads, d, h, w = q.shape
        n, hw = b * heads, h * w
        ks = weight.shape[-1]
        taps, pad = ks * ks, ks // 2
        wk = weight.reshape(d, taps, taps).permute(2, 0, 1)  # (shift, d, taps)
        qs = (q * scale).reshape(n, d, h, w)
        qf = qs.view(n, d, hw)
        kp = F.pad(k.reshape(n, d, h, w), (pad, pad, pad, pad))
        vp = F.pad(v.reshape(n, d, h, w), (pad, pad, pad, pad))
        bmat = None if bias is None else bias.view(d, taps)
        logits = qs.new_zeros(n, taps, hw) if bmat is None else _bmm(bmat.t(), qf)
        for s in range(taps):
            prod = qs * _shift_view(kp, s, ks, h, w)  # q_c * (shift s of k)_c, contiguous
            logits.baddbmm_(wk[s].t().expand(n, -1, -1), prod.view(n, d, hw))
            del prod
        if rpb is not None:  # a bias of the keys, seen from the logits: rpb * sum_c q_c
            logits.addcmul_(rpb.repeat(b, 1).view(n, taps, 1), qf.sum(1, keepdim=True))
        attn = torch.softmax(logits, dim=1)
        del logits
        out = qs.new_zeros(n, d, h, w) if bmat is None else _bmm(bmat, attn).view(n, d, h, w)
        for s in range(taps):
            # sum_i W[c, i, s] A_i: the weight of shift s of v in the output, per channel
            out.addcmul_(_shift_view(vp, s, ks, h, w), _bmm(wk[s], attn).view(n, d, h, w))
        ctx.save_for_backward(qs, kp, vp, weight, bias, rpb, attn)
        ctx.scale, ctx.batch = scale, b
        return out.view(b, heads, d, h, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qs, kp, vp, weight, bias, rpb, attn = ctx.saved_tensors
        n, d, h, w = qs.shape
        b, hw = ctx.batch, h * w
        ks = weight.shape[-1]
        taps, pad = ks * ks, ks // 2
        need_q, need_k, need_v, need_w, need_b, need_rpb = ctx.needs_input_grad[:6]
        wk = weight.reshape(d, taps, taps).permute(2, 0, 1)
        g = grad_out.reshape(n, d, h, w).contiguous()
        gf = g.view(n, d, hw)
        qf = qs.view(n, d, hw)
        attn_t = attn.transpose(1, 2)  # (N, H*W, taps), a view
        bmat = None if bias is None else bias.view(d, taps)
        dwk = weight.new_zeros(taps, d, taps) if need_w else None
        dvp = torch.zeros_like(vp) if need_v else None
        # out = sum_s v_s * (W_s A) + B A: gradients of A, W, B and v, shift by shift
        dattn = torch.zeros_like(attn) if bmat is None else _bmm(bmat.t(), gf)
        for s in range(taps):
            if need_v:
                _shift_view(dvp, s, ks, h, w).addcmul_(g, _bmm(wk[s], attn).view(n, d, h, w))
            dmix = (g * _shift_view(vp, s, ks, h, w)).view(n, d, hw)
            dattn.baddbmm_(wk[s].t().expand(n, -1, -1), dmix)
            if need_w:
                dwk[s] += torch.bmm(dmix, attn_t).sum(0)
            del dmix
        dlogits = attn * (dattn - (attn * dattn).sum(1, keepdim=True))  # softmax backward
        del dattn
        # logits = sum_s W_s^T (q * k_s) + B^T q + rpb * sum_c q
        rpb_n = None if rpb is None else rpb.repeat(b, 1).view(n, taps, 1)
        dqs = None
        if need_q:
            dqs = torch.zeros_like(qs) if bmat is None else _bmm(bmat, dlogits).view(n, d, h, w)
            if rpb is not None:
                dqs += (rpb_n * dlogits).sum(1).view(n, 1, h, w)
        dkp = torch.zeros_like(kp) if need_k else None
        dlogits_t = dlogits.transpose(1, 2)
        for s in range(taps):
            ksh = _shift_view(kp, s, ks, h, w)
            dprod = _bmm(wk[s], dlogits).view(n, d, h, w)
            if need_q:
                dqs.addcmul_(ksh, dprod)
            if need_k:
                _shift_view(dkp, s, ks, h, w).addcmul_(qs, dprod)
            del dprod
            if need_w:
                dwk[s] += torch.bmm((qs * ksh).view(n, d, hw), dlogits_t).sum(0)
        shape = (b, n // b, d, h, w)
        dq = dk = dv = dweight = dbias = drpb = None
        if need_q:
            dq = (dqs * ctx.scale).view(shape)
        if need_k:
            dk = dkp[..., pad:pad + h, pad:pad + w].reshape(shape)
        if need_v:
            dv = dvp[..., pad:pad + h, pad:pad + w].reshape(shape)
        if need_w:
            dweight = dwk.permute(1, 2, 0).reshape(weight.shape)
        if bias is not None and need_b:
            dbias = (torch.bmm(gf, attn_t) + torch.bmm(qf, dlogits_t)).sum(0).reshape(bias.shape)
        if rpb is not None and need_rpb:
            drpb = (dlogits * qf.sum(1, keepdim=True)).sum(2).view(b, -1, taps).sum(0)
        return dq, dk, dv, dweight, dbias, drpb, None
