// llasa-rt: a tiny fixed thread pool.
#include "thread_pool.h"

#include <stdexcept>
#include <string>

namespace llasa_rt {

ThreadPool::ThreadPool(int threads, bool spin) : spin_(spin) {
  if (threads < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(threads));
  workers_.reserve(static_cast<size_t>(threads - 1));
  for (int w = 1; w < threads; ++w) workers_.emplace_back([this, w] { WorkerLoop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
  }
  wake_.notify_all();
  for (auto &t : workers_) t.join();
}

void ThreadPool::Drain(int worker) {
  for (int task = next_task_.fetch_add(1); task < tasks_; task = next_task_.fetch_add(1)) {
    try {
      fn_(context_, task, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

namespace {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done() or kSpin has passed (not at all without `spin`); true when done() held.
template <typename Done>
bool SpinFor(bool spin, Done done) {
  if (!spin) return done();
  const auto until = std::chrono::steady_clock::now() + ThreadPool::kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    CpuRelax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) return done();
  }
}

}  // namespace

void ThreadPool::Run(int tasks, TaskFn fn, void *context) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {  // Nothing to share: no wake-up cost.
    for (int task = 0; task < tasks; ++task) fn(context, task, 0);
    return;
  }
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = fn;
    context_ = context;
    tasks_ = tasks;
    next_task_.store(0);
    error_ = nullptr;
    busy_.store(static_cast<int>(workers_.size()));
    generation_.fetch_add(1);  // Spinning workers see this; sleeping ones are woken below.
    wake = sleeping_ > 0;
  }
  if (wake) wake_.notify_all();
  Drain(0);
  if (!SpinFor(spin_, [this] { return busy_.load() == 0; })) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_ = true;
    done_.wait(lock, [this] { return busy_.load() == 0; });
    caller_sleeping_ = false;
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::WorkerLoop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    if (!SpinFor(spin_, [&] { return generation_.load() != seen || stopping_.load(); })) {
      std::unique_lock<std::mutex> lock(mutex_);
      ++sleeping_;
      wake_.wait(lock, [&] { return stopping_.load() || generation_.load() != seen; });
      --sleeping_;
    }
    if (stopping_.load()) return;
    {
      // The task fields were written under mutex_ before the generation changed; taking it orders the reads.
      std::lock_guard<std::mutex> lock(mutex_);
      seen = generation_.load();
    }
    Drain(worker);
    if (busy_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (caller_sleeping_) done_.notify_one();
    }
  }
}

}  // namespace llasa_rt
