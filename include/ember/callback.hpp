// ember::Callback — Lightning's Callback as a C++ base class, generated from hooks.def.
// In-process callbacks and C++ plugins (plugin.hpp) derive from it; override only what you need.
#pragma once

#include <ember/abi/callbacks.h>

namespace ember {

using HookArgs = ember_hook_args_t;

class Callback {
 public:
  virtual ~Callback() = default;
#define EMBER_HOOK(name, since, doc) \
  virtual void name(const HookArgs&) {}
#include <ember/abi/hooks.def>
};

// Member pointers of the hooks by id, to call one hook of one callback by id.
using HookMember = void (Callback::*)(const HookArgs&);
inline HookMember hook_member(ember_hook_id_t id) {
  static const HookMember members[] = {
#define EMBER_HOOK(name, since, doc) &Callback::name,
#include <ember/abi/hooks.def>
  };
  return members[id];
}

// The hook names, in hooks.def order, for messages and the docs table.
inline const char* hook_name(ember_hook_id_t id) {
  static const char* const names[] = {
#define EMBER_HOOK(name, since, doc) #name,
#include <ember/abi/hooks.def>
  };
  return static_cast<unsigned>(id) < EMBER_HOOK_COUNT ? names[id] : "unknown_hook";
}

inline const char* hook_doc(ember_hook_id_t id) {
  static const char* const docs[] = {
#define EMBER_HOOK(name, since, doc) doc,
#include <ember/abi/hooks.def>
  };
  return static_cast<unsigned>(id) < EMBER_HOOK_COUNT ? docs[id] : "";
}

}  // namespace ember
