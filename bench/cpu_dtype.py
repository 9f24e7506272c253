"""Measure fp32 vs bf16 matmul throughput on this CPU: the fact behind the planner's CPU dtype choice.

Usage: python bench/cpu_dtype.py [--threads N]
Prints GFLOP/s for a 512x2048 @ 2048x2048 matmul in each dtype, the ratio, and what the planner
picks here (bf16 only where /proc/cpuinfo shows avx512_bf16 or amx_bf16).
"""

from __future__ import annotations

import argparse
import statistics
import time


def gflops(torch, dtype, threads: int, repeats: int = 20) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(512, 2048, dtype=dtype)
    b = torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 512 * 2048 * 2048 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    from gpudoctor.probe.cpu import native_bf16_flag

    threads = args.threads or torch.get_num_threads()
    fp32 = gflops(torch, torch.float32, threads)
    bf16 = gflops(torch, torch.bfloat16, threads)
    flag = native_bf16_flag()
    print(f"threads {threads}; native bf16 flag: {flag or 'none'}")
    print(f"fp32 {fp32:8.1f} GFLOP/s")
    print(f"bf16 {bf16:8.1f} GFLOP/s  (bf16/fp32 = {bf16 / fp32:.2f}x)")
    print(f"planner's CPU compute dtype here: {'bf16' if flag else 'fp32'}")


if __name__ == "__main__":
    main()
