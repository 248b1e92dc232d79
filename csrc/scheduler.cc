// Binds scheduler.h: request batching for servers. step() runs without the GIL (the Python backend takes it for
// its forward_rows call only); submit() and cancel() may be called from any thread.
#include "llasa_rt/scheduler.h"

#include <pybind11/stl.h>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindScheduler(py::module_ &m) {
  BindOptions<SchedulerConfig>(m, "SchedulerConfig", "How request batching interleaves prefills with decode steps.",
                               Optional("prefill_chunk", &SchedulerConfig::prefill_chunk,
                                        "Prompt tokens per prefill forward; running streams wait at most one chunk "
                                        "per step."));

  using U = RequestUpdate;
  py::class_<U>(m, "RequestUpdate", "What one Scheduler.step() reports about one request.")
      .def_readonly("id", &U::id, "The request's id (from submit).")
      .def_property_readonly(
          "new_final_codes", [](const U &u) { return Copy(u.new_final_codes); },
          "Codes (int32 array) its candidates all share, new since its previous update: play or decode them now.")
      .def_readonly("done", &U::done, "It ended: every candidate finished, or it was cancelled.")
      .def_readonly("cancelled", &U::cancelled, "It ended through cancel().")
      .def_readonly("candidates", &U::candidates, "When done: its candidates (uids 0..N-1), as Generator gives them.")
      .def_readonly("prefill_seconds", &U::prefill_seconds, "When done: seconds in its prefill forwards.")
      .def_readonly("decode_steps", &U::decode_steps, "When done: decode steps it took part in.")
      .def_readonly("batch_tokens", &U::batch_tokens, "When done: other requests' rows that shared its steps.");

  py::class_<Scheduler>(m, "Scheduler",
                        "Continuous batching: requests with their own prompts, options and candidate counts share "
                        "one KV cache and one batched step; each gets what Generator would give it alone.")
      .def(py::init<Backend &, const GeneratorConfig &, const SchedulerConfig &>(), py::arg("backend"),
           py::arg("config"), py::arg("scheduler") = SchedulerConfig(), py::keep_alive<1, 2>(),
           "The backend must implement forward_rows; its cache's slots bound the live candidates of all requests.")
      .def(
          "submit",
          [](Scheduler &s, py::array_t<int64_t, py::array::c_style | py::array::forcecast> prompt_ids,
             const SamplingOptions &options, int num_candidates) {
            if (prompt_ids.ndim() != 1) throw std::invalid_argument("prompt_ids must be a 1-D sequence of token ids");
            std::vector<int64_t> ids(prompt_ids.data(), prompt_ids.data() + prompt_ids.shape(0));
            return s.Submit(ids, options, num_candidates);
          },
          py::arg("prompt_ids"), py::kw_only(), py::arg("options"), py::arg("num_candidates") = 1,
          "Queues a request; returns its id. Raises InputError for a prompt or options that cannot run.")
      .def("cancel", &Scheduler::Cancel, py::arg("id"),
           "Ends request `id` at the next step and frees its slots; False if unknown or already ended.")
      .def("step", &Scheduler::Step, py::call_guard<py::gil_scoped_release>(),
           "One iteration (cancellations, at most one prefill chunk, one decode step over every live candidate); "
           "returns a list of RequestUpdate. One thread steps.")
      .def_property_readonly("queued", &Scheduler::queued, "Requests waiting for slots.")
      .def_property_readonly("running", &Scheduler::running, "Requests admitted and not ended.")
      .def_property_readonly("live_slots", &Scheduler::live_slots, "KV slots of live candidates.")
      .def_property_readonly("slots", &Scheduler::slots, "KV slots in all.")
      .def_property_readonly("idle", &Scheduler::idle, "Nothing queued or running.");
}

}  // namespace python
}  // namespace llasa_rt
