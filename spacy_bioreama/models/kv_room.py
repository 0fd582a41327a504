"""KV cache layers with room to grow, for the greedy decoding loop.

Why: transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`,
copying the whole cache of every layer on every generated token. Profiled on 2 CPU
cores (embedded SmolLM2-135M, batch 8, 450-token prompts), that copy was 26 % of a
decoding step. `RoomyLayer` keeps the cache in a buffer with room for the answer and
writes each step in place, handing the attention the same values as views, so answers do
not change. Only plain full-attention `DynamicLayer`s are converted; any other cache is
left as it is.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - transformers without cache layers
    DynamicLayer = None  # type: ignore[assignment,misc]


class RoomyLayer(DynamicLayer):  # type: ignore[misc,valid-type]
    """A `DynamicLayer` whose keys and values are views of a buffer with spare room."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        length = keys.shape[-2]
        self._keys = keys.new_empty((*keys.shape[:-2], length + room, keys.shape[-1]))
        self._values = values.new_empty((*values.shape[:-2], length + room, values.shape[-1]))
        self._keys[..., :length, :] = keys
        self._values[..., :length, :] = values
        self._length = length
        self.device = keys.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys = self._keys[..., : self._length, :]
        self.values = self._values[..., : self._length, :]

    def _grow(self, extra: int) -> None:
        pad = (*self._keys.shape[:-2], extra, self._keys.shape[-1])
        self._keys = torch.cat([self._keys, self._keys.new_empty(pad)], dim=-2)
        pad = (*self._values.shape[:-2], extra, self._values.shape[-1])
        self._values = torch.cat([self._values, self._values.new_empty(pad)], dim=-2)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new states after the cached ones (growing only when out of room)."""
        new = key_states.shape[-2]
        if self._length + new > self._keys.shape[-2]:
            self._grow(max(new, self._keys.shape[-2]))
        end = self._length + new
        self._keys[..., self._length : end, :] = key_states
        self._values[..., self._length : end, :] = value_states
        self._length = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        """Cached tokens (not the buffer's room)."""
        return self._length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep (or reorder) batch rows, room included."""
        idx = beam_idx.to(self._keys.device)
        self._keys = self._keys.index_select(0, idx)
        self._values = self._values.index_select(0, idx)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the batch rows `indices`."""
        self._keys, self._values = self._keys[indices, ...], self._values[indices, ...]
        self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every batch row `repeats` times."""
        self._keys = self._keys.repeat_interleave(repeats, dim=0)
        self._values = self._values.repeat_interleave(repeats, dim=0)
        self._views()

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last `-tokens_to_remove` tokens (transformers' convention)."""
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self._length = max(0, self._length + tokens_to_remove)
        self._views()

    def reset(self) -> None:
        """Forget every token (the buffer is kept)."""
        self._length = 0
        self._views()


def with_room(cache: Any, room: int) -> Any:
    """`cache` with every plain `DynamicLayer` replaced by a `RoomyLayer` holding `room`
    more tokens; a cache with any other kind of layer (or an offloading one) is returned
    unchanged."""
    layers = getattr(cache, "layers", None)
    if DynamicLayer is None or not layers or room < 1 or getattr(cache, "offloading", False):
        return cache
    if not all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers):
        return cache
    for i, layer in enumerate(layers):  # one at a time: the old layer is freed at once
        layers[i] = RoomyLayer(layer.keys, layer.values, room)
    return cache


__all__ = ["RoomyLayer", "with_room"]
