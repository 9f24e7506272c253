"""A replay of PyTorch's CUDA caching allocator on the CPU: what torch.cuda.max_memory_reserved would be
for a sequence of allocations and frees recorded by torch.profiler on the CPU.

The policy is the one of c10/cuda/CUDACachingAllocator.cpp (PyTorch 2.x, default settings, one stream,
no empty_cache, no expandable segments):
- every request is rounded up to a multiple of 512 bytes (kMinBlockSize);
- requests of at most 1 MiB (kSmallSize) come from 2 MiB segments (kSmallBuffer), the small pool;
- larger ones come from the large pool: a request under 10 MiB (kMinLargeAlloc) opens a 20 MiB segment
  (kLargeBuffer), a larger one a segment of its own size rounded up to 2 MiB (kRoundLarge);
- a request takes the smallest free cached block of its pool that fits (best fit); the block is split
  when what remains is at least 512 bytes (small pool) or more than 1 MiB (large pool);
- a freed block merges with free neighbours of its segment and stays cached: reserved never shrinks.

`profiled_peaks(prof, scale)` replays a profile's allocation events with every size multiplied by
`scale` (the same step with `scale` times the tokens: activations and logits grow with the tokens),
and returns (peak allocated, peak reserved) in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KB, MB = 1024, 1024 * 1024
MIN_BLOCK = 512
SMALL_SIZE = 1 * MB
SMALL_BUFFER = 2 * MB
MIN_LARGE_ALLOC = 10 * MB
LARGE_BUFFER = 20 * MB
ROUND_LARGE = 2 * MB


@dataclass
class Block:
    segment: int
    start: int
    size: int
    free: bool = True


@dataclass
class CachingAllocator:
    blocks: list[Block] = field(default_factory=list)
    segments: dict[int, tuple[bool, int]] = field(default_factory=dict)  # id -> (small pool, size)
    allocated: int = 0
    peak_allocated: int = 0
    peak_reserved: int = 0

    @property
    def reserved(self) -> int:
        return sum(size for _, size in self.segments.values())

    def malloc(self, size: int) -> Block:
        size = max(MIN_BLOCK, -(-size // MIN_BLOCK) * MIN_BLOCK)
        small = size <= SMALL_SIZE
        fits = [b for b in self.blocks if b.free and b.size >= size and self.segments[b.segment][0] == small]
        block = min(fits, key=lambda b: (b.size, b.segment, b.start)) if fits else self._segment(size, small)
        rest = block.size - size
        if rest >= MIN_BLOCK if small else rest > SMALL_SIZE:
            self.blocks.append(Block(block.segment, block.start + size, rest))
            block.size = size
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return block

    def _segment(self, size: int, small: bool) -> Block:
        if small:
            total = SMALL_BUFFER
        elif size < MIN_LARGE_ALLOC:
            total = LARGE_BUFFER
        else:
            total = -(-size // ROUND_LARGE) * ROUND_LARGE
        segment = len(self.segments)
        self.segments[segment] = (small, total)
        block = Block(segment, 0, total)
        self.blocks.append(block)
        return block

    def free(self, block: Block) -> None:
        block.free = True
        self.allocated -= block.size
        neighbours = sorted((b for b in self.blocks if b.segment == block.segment), key=lambda b: b.start)
        merged: list[Block] = []
        for b in neighbours:
            if merged and merged[-1].free and b.free and merged[-1].start + merged[-1].size == b.start:
                merged[-1].size += b.size
                self.blocks.remove(b)
            else:
                merged.append(b)


def replay(events: list[tuple[str, object, int]], scale: float = 1.0) -> tuple[int, int]:
    """(peak allocated, peak reserved) of ("alloc" | "free", key, bytes) events through the allocator."""
    allocator = CachingAllocator()
    live: dict[object, Block] = {}
    for action, key, size in events:
        if action == "alloc":
            if key in live:
                allocator.free(live.pop(key))
            live[key] = allocator.malloc(int(size * scale))
        elif key in live:
            allocator.free(live.pop(key))
    return allocator.peak_allocated, allocator.peak_reserved


def profiled_events(prof) -> list[tuple[str, object, int]]:
    """The allocations and frees torch.profiler (profile_memory=True) saw, by address and in time order;
    memory allocated before the profile (and freed in it) is left out."""
    from torch._C._profiler import _EventType

    raw = []
    for event in prof._memory_profile()._op_tree.dfs():
        if event.typed[0] == _EventType.Allocation:
            fields = event.typed[1]
            raw.append((event.start_time_ns, fields.ptr, fields.alloc_size))
    raw.sort(key=lambda item: item[0])
    out: list[tuple[str, object, int]] = []
    live: set[int] = set()
    for _, ptr, size in raw:
        if size > 0:
            live.add(ptr)
            out.append(("alloc", ptr, size))
        elif ptr in live:
            live.discard(ptr)
            out.append(("free", ptr, -size))
    return out


def profiled_peaks(prof, scale: float = 1.0) -> tuple[int, int]:
    return replay(profiled_events(prof), scale)
