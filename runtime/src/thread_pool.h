// llasa-rt (internal): a tiny fixed thread pool for data-parallel loops (sampling many candidates per step, the
// attention and matrix kernels). Run() neither allocates nor creates threads; the calling thread works too. Workers
// and the caller of a pool made with `spin` wait for a short while (kSpin) spinning before they sleep on a condition
// variable: NativeLm's decode step runs ~100 short parallel loops back to back, and a futex wake-up per loop cost
// more than the loop (one stream 16.1 -> 9.9 ms per step). Pools whose runs alternate with other threads' work (the
// attention between ONNX Runtime's segment runs) do not spin: their spinning would take those threads' cores.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace llasa_rt {

class ThreadPool {
 public:
  // A task function: runs task `task` on worker `worker` (0 = the calling thread).
  using TaskFn = void (*)(void *context, int task, int worker);

  // `threads` workers in total including the caller; 1 = everything runs on the calling thread. `spin`: wait for
  // work (workers) and for the workers (caller) spinning for up to kSpin before sleeping.
  explicit ThreadPool(int threads, bool spin = false);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // How long a worker waits for the next Run, and the caller for the workers, before sleeping.
  static constexpr std::chrono::microseconds kSpin{200};

  // Runs fn(context, task, worker) for every task in [0, tasks) and returns when all are done.
  // Rethrows the first exception a task threw (the other tasks still run to completion).
  void Run(int tasks, TaskFn fn, void *context);

 private:
  void WorkerLoop(int worker);
  void Drain(int worker);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> generation_{0};  // Bumped by Run() under mutex_; workers start when it changes.
  std::atomic<int> busy_{0};             // Workers still inside the current generation.
  int sleeping_ = 0;                     // Workers waiting on wake_ (under mutex_).
  bool caller_sleeping_ = false;         // Run() waits on done_ (under mutex_).
  std::atomic<bool> stopping_{false};
  const bool spin_;
  TaskFn fn_ = nullptr;
  void *context_ = nullptr;
  int tasks_ = 0;
  std::atomic<int> next_task_{0};
  std::exception_ptr error_;
};

}  // namespace llasa_rt
