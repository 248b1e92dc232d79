// Binds llasa_rt::CandidateSet (fork / prune / finish over a KvCache's slots), mainly for tests and tools;
// the decode loop owns its own set.
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "bindings.h"
#include "llasa_rt/candidates.h"

namespace py = pybind11;

namespace llasa_rt {
namespace python {

namespace {

FinishReason ParseReason(const std::string &name) {
  for (FinishReason r : {FinishReason::kEnd, FinishReason::kMaxNewTokens, FinishReason::kContextFull,
                         FinishReason::kStopped}) {
    if (name == FinishReasonName(r)) return r;
  }
  throw std::invalid_argument("finish reason '" + name + "' is not one of end, max_new_tokens, context_full, stopped");
}

}  // namespace

void BindCandidateSet(py::module_ &m) {
  py::class_<CandidateSet>(m, "CandidateSet",
                           "Candidates whose live members are kept compacted in KV slots [0, live).")
      .def(py::init<KvCache &>(), py::arg("cache"), py::keep_alive<1, 2>())
      .def("reset", &CandidateSet::Reset, py::arg("token_capacity"), "Forgets every candidate.")
      .def(
          "add_root", [](CandidateSet &s) { return s.AddRoot().uid; },
          "Creates a candidate in slot 0 (an empty set only); returns its uid.")
      .def(
          "fork", [](CandidateSet &s, uint64_t uid) { return s.Fork(uid).uid; }, py::arg("uid"),
          "Copies live candidate `uid` and its KV prefix [0, kv_length) into the first free slot; returns the new uid.")
      .def("prune", &CandidateSet::Prune, py::arg("uid"),
           "Removes candidate `uid`; the last live candidate moves into its slot (one CopySlot of the prefix).")
      .def(
          "finish",
          [](CandidateSet &s, uint64_t uid, const std::string &reason) { s.Finish(uid, ParseReason(reason)); },
          py::arg("uid"), py::arg("reason") = "end", "Moves live candidate `uid` out of the live set.")
      .def_property("kv_length", &CandidateSet::kv_length, &CandidateSet::set_kv_length,
                    "Positions [0, kv_length) of every live slot hold valid keys/values.")
      .def_property_readonly("live", &CandidateSet::live, "Number of live candidates (slots [0, live)).")
      .def(
          "live_uids",
          [](CandidateSet &s) {
            std::vector<uint64_t> uids;
            for (int slot = 0; slot < s.live(); ++slot) uids.push_back(s.InSlot(slot).uid);
            return uids;
          },
          "Uids of the live candidates in slot order.")
      .def("candidates", &CandidateSet::all, "Every candidate not pruned (snapshots), in creation order.");
}

}  // namespace python
}  // namespace llasa_rt
