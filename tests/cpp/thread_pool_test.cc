// The core's ThreadPool (runtime/src/thread_pool.h), spinning and sleeping: many Runs back to back with varying task
// counts (every task runs exactly once, the caller returns only when all have finished), Runs after the workers
// have gone to sleep (the wake-up path), an exception in a task reaches the caller and the pool stays usable, and a
// pool is destroyed while its workers spin or sleep. Exit status 0 when every check passes. A ctest test; it is also
// the program to run under -fsanitize=thread when the pool changes.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "thread_pool.h"

namespace {

int g_failures = 0;

void Check(bool ok, const char *what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++g_failures;
  }
}

struct Counts {
  std::vector<std::atomic<int>> hits;
  std::atomic<long long> sum{0};
  explicit Counts(int n) : hits(n) {}
};

void Exercise(bool spin, int threads) {
  llasa_rt::ThreadPool pool(threads, spin);
  Check(pool.size() == threads, "size() counts the caller");
  for (int round = 0; round < 3000; ++round) {
    const int tasks = 1 + (round * 7919) % 37;
    Counts c(tasks);
    pool.Run(
        tasks,
        [](void *context, int task, int worker) {
          Counts &c = *static_cast<Counts *>(context);
          c.hits[task].fetch_add(1);
          c.sum.fetch_add(task + 1);
          (void)worker;
        },
        &c);
    bool once = true;
    for (auto &h : c.hits) once = once && h.load() == 1;
    Check(once, "every task ran exactly once before Run returned");
    Check(c.sum.load() == static_cast<long long>(tasks) * (tasks + 1) / 2, "the tasks' work is all visible");
    if (round % 500 == 499) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // Workers go to sleep.
  }
  bool threw = false;
  try {
    pool.Run(
        8,
        [](void *, int task, int) {
          if (task == 5) throw std::runtime_error("task 5");
        },
        nullptr);
  } catch (const std::runtime_error &e) {
    threw = std::string(e.what()) == "task 5";
  }
  Check(threw, "a task's exception reaches the caller");
  std::atomic<int> after{0};
  pool.Run(
      4, [](void *context, int, int) { static_cast<std::atomic<int> *>(context)->fetch_add(1); }, &after);
  Check(after.load() == 4, "the pool works after an exception");
}

}  // namespace

int main() {
  for (bool spin : {false, true}) {
    for (int threads : {1, 2, 3}) Exercise(spin, threads);
  }
  for (int i = 0; i < 50; ++i) {  // Destroyed while the workers spin (right after a Run) or sleep.
    llasa_rt::ThreadPool pool(2, i % 2 == 0);
    std::atomic<int> n{0};
    pool.Run(
        2, [](void *context, int, int) { static_cast<std::atomic<int> *>(context)->fetch_add(1); }, &n);
    if (i % 4 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Check(n.load() == 2, "a pool about to be destroyed ran its tasks");
  }
  if (g_failures) {
    std::printf("%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("thread_pool_test: all checks passed\n");
  return 0;
}
