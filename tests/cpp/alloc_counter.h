// Test-only: replaces the global operator new/delete of the test binary that includes this header (include it in
// exactly one file of a binary) so that a test can count heap allocations: read g_allocations before and after.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long long> g_allocations{0};

void *CountedAlloc(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace

void *operator new(std::size_t n) {
  if (void *p = CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void *operator new[](std::size_t n) {
  if (void *p = CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void *operator new(std::size_t n, const std::nothrow_t &) noexcept { return CountedAlloc(n); }
void *operator new[](std::size_t n, const std::nothrow_t &) noexcept { return CountedAlloc(n); }
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t) noexcept { std::free(p); }
