"""Mask decoder: two-way transformer between prompt tokens and the image, upscaling, IoU head.

State-dict keys match Meta's ``segment_anything.modeling.MaskDecoder`` /
``TwoWayTransformer``. Attention uses :func:`torch.nn.functional.scaled_dot_product_attention`.
The image embedding may have batch 1 and be shared by N prompts: it is broadcast, not copied,
until the first layer that updates it per prompt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d, MLPBlock

__all__ = ["MaskDecoder", "TwoWayTransformer", "TwoWayAttentionBlock", "Attention", "MLP"]


class Attention(nn.Module):
    """Multi-head attention whose projections may downscale the channel dimension.

    Keys ``q_proj``, ``k_proj``, ``v_proj`` (D -> D / downsample_rate), ``out_proj``.
    Inputs: q (Bq, Nq, D), k and v (Bk, Nk, D) with Bk == Bq or Bk == 1 (broadcast).
    Output: (Bq, Nq, D).
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        if k.shape[0] != q.shape[0]:
            k = k.expand(q.shape[0], -1, -1, -1)
            v = v.expand(q.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token attention."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def token_self_attention(self, queries: Tensor, query_pe: Tensor) -> Tensor:
        """The first step: self-attention of the prompt tokens, then ``norm1``.

        queries and query_pe (N, T, D) -> (N, T, D). The first block attends without the
        positional encoding and without a residual (as in SAM).
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        return self.norm1(queries)

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """queries (N, T, D), keys (N or 1, HW, D), pes alike -> (queries, keys (N, HW, D))."""
        queries = self.token_self_attention(queries, query_pe)

        k = keys + key_pe
        queries = self.norm2(
            queries + self.cross_attn_token_to_image(q=queries + query_pe, k=k, v=keys)
        )
        queries = self.norm3(queries + self.mlp(queries))

        attn_out = self.cross_attn_image_to_token(q=k, k=queries + query_pe, v=queries)
        keys = self.norm4(keys + attn_out)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Two-way transformer decoder of SAM.

    Parameters
    ----------
    depth : int
        Number of :class:`TwoWayAttentionBlock` layers (2 in SAM).
    embedding_dim : int
        Channel dimension D (256).
    num_heads : int
        Attention heads (8).
    mlp_dim : int
        Hidden dimension of the token MLP (2048).
    """

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Run the decoder.

        Parameters
        ----------
        image_embedding : Tensor
            (N or 1, D, h, w).
        image_pe : Tensor
            (N or 1, D, h, w).
        point_embedding : Tensor
            (N, T, D) tokens.

        Returns
        -------
        queries : Tensor
            (N, T, D).
        keys : Tensor
            (N, h*w, D) (batch 1 only if N == 1 or depth == 0).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(
                queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe
            )
        attn_out = self.final_attn_token_to_image(
            q=queries + point_embedding, k=keys + key_pe, v=keys
        )
        return self.norm_final_attn(queries + attn_out), keys


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (keys ``layers.i``)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: Tensor) -> Tensor:
        """x (..., input_dim) -> (..., output_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class MaskDecoder(nn.Module):
    """Predict masks and their IoU from image and prompt embeddings.

    Parameters
    ----------
    transformer_dim : int
        Channel dimension D of the transformer (256).
    transformer : TwoWayTransformer
    num_multimask_outputs : int
        Masks predicted for ambiguous prompts (3); one more token predicts the single mask.
    iou_head_depth, iou_head_hidden_dim : int
        IoU-prediction MLP.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks.

        Parameters
        ----------
        image_embeddings : Tensor
            (N or 1, D, E, E); batch 1 is shared by all N prompts. (Meta's decoder
            repeat-interleaves instead; for its only use, batch 1, the result is the same.)
        image_pe : Tensor
            (1, D, E, E) dense positional encoding.
        sparse_prompt_embeddings : Tensor
            (N, T, D).
        dense_prompt_embeddings : Tensor
            (N or 1, D, E, E).
        multimask_output : bool
            Return masks 1..num_multimask_outputs, else mask 0.

        Returns
        -------
        masks : Tensor
            (N, C, 4E, 4E) logits, C = num_multimask_outputs or 1.
        iou_pred : Tensor
            (N, C).
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """All mask tokens: -> masks (N, M, 4E, 4E), iou (N, M) with M = num_mask_tokens."""
        n = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.to(sparse_prompt_embeddings.dtype)
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings], dim=1
        )
        src = image_embeddings + dense_prompt_embeddings  # broadcast, one allocation
        _, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        src = keys.transpose(1, 2).reshape(keys.shape[0], c, h, w)
        upscaled = self.output_upscaling(src)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (N, M, D/8)
        b, c2, h2, w2 = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c2, h2 * w2)).reshape(
            -1, self.num_mask_tokens, h2, w2
        )
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred
