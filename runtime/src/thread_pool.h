// llasa-rt (internal): a tiny fixed thread pool for data-parallel loops (sampling many candidates per step).
// Run() neither allocates nor creates threads; the calling thread works too.
#pragma once

#include <atomic>
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

  // `threads` workers in total including the caller; 1 = everything runs on the calling thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

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
  uint64_t generation_ = 0;  // Bumped by Run(); workers wake when it changes.
  int busy_ = 0;             // Workers still inside the current generation.
  bool stopping_ = false;
  TaskFn fn_ = nullptr;
  void *context_ = nullptr;
  int tasks_ = 0;
  std::atomic<int> next_task_{0};
  std::exception_ptr error_;
};

}  // namespace llasa_rt
