// llasa-rt: exceptions the core throws on purpose. Bindings map them to Python exceptions:
// std::invalid_argument -> llasa_rt.errors.InputError (a ValueError), AllocationError -> MemoryError,
// std::runtime_error -> RuntimeError. Every message names the problem and what to change.
#pragma once

#include <stdexcept>
#include <string>

namespace llasa_rt {

// A buffer could not be allocated; the message gives its shape and what to reduce.
class AllocationError : public std::runtime_error {
 public:
  explicit AllocationError(const std::string &message) : std::runtime_error(message) {}
};

}  // namespace llasa_rt
