// Binds candidates.h: Candidate (what generation results and callbacks hand out, as snapshots) and, into
// llasa_rt._core.testing, CandidateSet (the decode loop keeps its own; tests drive one directly). Finish reasons
// cross as their names.
#include "llasa_rt/candidates.h"

#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.h"

namespace llasa_rt {
namespace python {

void BindCandidates(py::module_ &m, py::module_ &testing) {
  py::class_<Candidate>(m, "Candidate", "A snapshot of one candidate: later steps do not change it.")
      .def_readonly("uid", &Candidate::uid, "Its id in this generation; candidate i of N starts with uid i.")
      .def_readonly("slot", &Candidate::slot, "Its KV slot while live, -1 once finished.")
      .def_property_readonly(
          "tokens", [](const Candidate &c) { return Copy(c.tokens); },
          "Speech codes generated (int32 array), without END.")
      .def_readonly("logprob", &Candidate::logprob, "Sum of the model's log-probs of its tokens, END included.")
      .def_readonly("finished", &Candidate::finished, "Whether it stopped.")
      .def_readonly("finish_reason", &Candidate::finish_reason,
                    "'none' while live, else 'end', 'max_new_tokens', 'context_full' or 'stopped'.")
      .def_readonly("scores", &Candidate::scores, "Scores set through GenerationController.set_score (a dict).")
      .def("__repr__", [](const Candidate &c) {
        return "Candidate(uid=" + std::to_string(c.uid) + ", tokens=" + std::to_string(c.tokens.size()) +
               ", logprob=" + std::to_string(c.logprob) + ", finish_reason='" + FinishReasonName(c.finish_reason) +
               "')";
      });

  py::class_<CandidateSet>(testing, "CandidateSet",
                           "Candidates over a KvCache's slots, the live ones always in slots [0, live): fork "
                           "copies a KV prefix into a free slot, prune and finish move the last live one into the "
                           "hole.")
      .def(py::init<KvCache &>(), py::arg("cache"), py::keep_alive<1, 2>())
      .def("reset", &CandidateSet::Reset, py::arg("token_capacity"),
           "Forgets every candidate; `token_capacity` tokens are reserved per new candidate.")
      .def(
          "add_root", [](CandidateSet &s) { return s.AddRoot().uid; },
          "Adds the first candidate, in slot 0, to an empty set; returns its uid.")
      .def(
          "fork", [](CandidateSet &s, uint64_t uid) { return s.Fork(uid).uid; }, py::arg("uid"),
          "Copies live candidate `uid` (and KV positions [0, kv_length)) under a new uid, which it returns.")
      .def("prune", &CandidateSet::Prune, py::arg("uid"), "Removes candidate `uid`, live or finished.")
      .def("finish", &CandidateSet::Finish, py::arg("uid"), py::arg("reason") = FinishReason::kEnd,
           "Takes live candidate `uid` out of the live set; `reason` is 'end', 'max_new_tokens', 'context_full' "
           "or 'stopped'.")
      .def_property("kv_length", &CandidateSet::kv_length, &CandidateSet::set_kv_length,
                    "KV positions valid in every live slot (what fork copies).")
      .def_property_readonly("live", &CandidateSet::live, "Live candidates (they hold slots [0, live)).")
      .def(
          "live_uids",
          [](CandidateSet &s) {
            std::vector<uint64_t> uids;
            for (int slot = 0; slot < s.live(); ++slot) uids.push_back(s.InSlot(slot).uid);
            return uids;
          },
          "Uids of the live candidates, by slot.")
      .def("candidates", &CandidateSet::all, "Snapshots of every candidate not pruned, oldest first.");
}

}  // namespace python
}  // namespace llasa_rt
