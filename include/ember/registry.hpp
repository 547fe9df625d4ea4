// The static hook registry: one flat array of (function, self) slots per hook.
//
// Registering fills only the slots a callback implements, so a hook nobody implements is an
// empty loop. In-process C++ callbacks and loaded plugins land in the same slots, in
// registration order. Dispatch is a loop over a contiguous array.
#pragma once

#include <ember/callback.hpp>

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ember {

// The plugin's own words for a failure: its last_error, read at once on the thread that saw the
// failing status (abi/entry.h), or the status when it left no message.
inline std::string plugin_message(ember_str_t (*last_error)(void*), void* self, ember_status_t rc) {
  if (last_error) {
    ember_str_t e = last_error(self);
    if (e.data && e.size) return std::string(e.data, e.size);
  }
  return "status " + std::to_string(rc) + " and no message";
}

// The one shape of a plugin failure, built here only: "ID: WHAT failed: MESSAGE" (design notes:
// the host prefixes the plugin id and what it called; plugin messages leave their id out). Hooks,
// logger, media, state and storage calls and create all report through it.
inline std::string failure_text(std::string_view id, std::string_view what, std::string_view message) {
  // A plugin that prefixes its own id ("c_counter: failing ...") is not repeated: the host's
  // prefix is the one kept.
  if (!id.empty() && message.size() > id.size() + 1 && message.substr(0, id.size()) == id &&
      message.substr(id.size(), 2) == ": ")
    message.remove_prefix(id.size() + 2);
  std::string out(id);
  out.append(": ").append(what).append(" failed: ").append(message);
  return out;
}
inline std::string plugin_failure(std::string_view id, std::string_view what, ember_str_t (*last_error)(void*),
                                  void* self, ember_status_t rc) {
  return failure_text(id, what, plugin_message(last_error, self, rc));
}

// A hook failed: which owner (plugin id or callback name), which hook, what it said.
class HookError : public std::runtime_error {
 public:
  HookError(std::string owner, ember_hook_id_t hook, std::string message)
      : std::runtime_error(failure_text(owner, std::string("hook ") + hook_name(hook), message)),
        owner_(std::move(owner)),
        hook_(hook),
        message_(std::move(message)) {}
  const std::string& owner() const { return owner_; }
  ember_hook_id_t hook() const { return hook_; }
  const std::string& message() const { return message_; }

 private:
  std::string owner_;
  ember_hook_id_t hook_;
  std::string message_;
};

class HookRegistry {
 public:
  using OwnerId = std::uint32_t;

  // Add an owner (a plugin instance or an in-process callback) for error reports.
  // last_error/self read a plugin's message after a failing status; null for C++ callbacks.
  OwnerId add_owner(std::string id, ember_str_t (*last_error)(void*) = nullptr,
                    void* self = nullptr) {
    owners_.push_back(Owner{std::move(id), last_error, self});
    return static_cast<OwnerId>(owners_.size() - 1);
  }

  // Register a plugin's C table: only non-null slots that lie inside its struct_size.
  void add_table(OwnerId owner, const ember_callbacks_v1_t& table, void* self) {
    const std::size_t size = table.struct_size;
#define EMBER_HOOK(name, since, doc)                                                       \
  if (offsetof(ember_callbacks_v1_t, name) + sizeof(ember_hook_fn) <= size && table.name) \
    slots_[EMBER_HOOK_ID_##name].push_back(Slot{table.name, self, owner});
#include <ember/abi/hooks.def>
  }

  // Register an in-process callback. For a concrete T the overridden hooks are found at compile
  // time and only those get slots. The callback must outlive the registry.
  template <class T>
  OwnerId add(T& callback, std::string id) {
    static_assert(std::is_base_of_v<Callback, T>, "T must derive from ember::Callback");
    OwnerId owner = add_owner(std::move(id));
#define EMBER_HOOK(name, since, doc)                                                        \
  if constexpr (std::is_same_v<T, Callback> ||                                              \
                !std::is_same_v<decltype(&T::name), decltype(&Callback::name)>)             \
    slots_[EMBER_HOOK_ID_##name].push_back(Slot{&Thunks<T>::name, static_cast<void*>(&callback), \
                                                owner});
#include <ember/abi/hooks.def>
    return owner;
  }

  // Register every hook of a callback whose concrete type is not known here (virtual dispatch).
  OwnerId add_all(Callback& callback, std::string id) { return add<Callback>(callback, std::move(id)); }

  // Run every slot of hook in order. The first failure stops the hook and throws HookError
  // naming the owner; a C++ exception from an in-process callback is wrapped the same way.
  void call(ember_hook_id_t hook, const HookArgs& args) const {
    const Slot* s = nullptr;
    try {
      for (const Slot& slot : slots_[hook]) {
        s = &slot;
        if (ember_status_t rc = slot.fn(slot.self, &args); rc != EMBER_OK) failed(slot, hook, rc);
      }
    } catch (const HookError&) {
      throw;
    } catch (const std::exception& e) {
      throw HookError(owners_[s->owner].id, hook, e.what());
    } catch (...) {
      throw HookError(owners_[s->owner].id, hook, "unknown exception");
    }
  }

  // Run every slot even when some fail (on_exception, teardown); returns the failures.
  std::vector<HookError> call_all(ember_hook_id_t hook, const HookArgs& args) const {
    std::vector<HookError> errors;
    for (const Slot& slot : slots_[hook]) {
      try {
        if (ember_status_t rc = slot.fn(slot.self, &args); rc != EMBER_OK) failed(slot, hook, rc);
      } catch (const HookError& e) {
        errors.push_back(e);
      } catch (const std::exception& e) {
        errors.emplace_back(owners_[slot.owner].id, hook, e.what());
      } catch (...) {
        errors.emplace_back(owners_[slot.owner].id, hook, "unknown exception");
      }
    }
    return errors;
  }

  std::size_t size(ember_hook_id_t hook) const { return slots_[hook].size(); }
  bool empty(ember_hook_id_t hook) const { return slots_[hook].empty(); }
  const std::string& owner_id(OwnerId owner) const { return owners_.at(owner).id; }

 private:
  struct Slot {
    ember_hook_fn fn;
    void* self;
    OwnerId owner;
  };
  struct Owner {
    std::string id;
    ember_str_t (*last_error)(void*);
    void* self;
  };

  template <class T>
  struct Thunks {
#define EMBER_HOOK(name, since, doc)                                   \
  static ember_status_t name(void* self, const HookArgs* args) {       \
    static_cast<T*>(self)->name(*args);                                \
    return EMBER_OK;                                                   \
  }
#include <ember/abi/hooks.def>
  };

  [[noreturn]] void failed(const Slot& slot, ember_hook_id_t hook, ember_status_t rc) const {
    const Owner& o = owners_[slot.owner];
    throw HookError(o.id, hook, plugin_message(o.last_error, o.self, rc));
  }

  std::array<std::vector<Slot>, EMBER_HOOK_COUNT> slots_;
  std::vector<Owner> owners_;
};

}  // namespace ember
