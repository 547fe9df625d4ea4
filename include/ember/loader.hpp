// Finding, checking and instantiating plugins.
//
// A plugin directory is scanned for *.so (and one level of sub-directories, the build tree's
// layout). A loaded .so is code, so the directory, each file, every directory on their way from
// / and every symlink followed must be owned by root or by us and not writable by group or others
// (check_trusted says exactly; sticky directories such as /tmp may lie on the way). Each library
// is opened with Boost.DLL, its entry read and checked (ABI major, minor, struct size, required
// functions) before any of its functions is called — but dlopen has run the library's
// constructors by then: the entry checks refuse broken or foreign plugins, not hostile ones; the
// directory rules are what keeps untrusted code out. Interface tables are copied into host-side
// structs and their required slots checked before the instance is used. Libraries stay loaded
// while any instance of theirs lives (shared ownership).
//
// The parts, one concern each: loader/library.hpp (ABI and entry checks, trust, PluginLibrary),
// loader/catalog.hpp (directory scan), loader/host_binding.hpp (Services and the host table),
// loader/adopt.hpp (interface tables); PluginInstance, which ties them together, is here.
#pragma once

#include <ember/loader/adopt.hpp>
#include <ember/loader/catalog.hpp>
#include <ember/loader/host_binding.hpp>
#include <ember/loader/library.hpp>

namespace ember {

// One live plugin instance. Destroyed before its library is released.
class PluginInstance {
 public:
  // config is checked against the plugin's schema (defaults filled) before create runs.
  // `where` names the config location for messages (e.g. "run.json: trainer.logger[0]").
  PluginInstance(std::shared_ptr<PluginLibrary> lib, boost::json::value config, Services& services,
                 const std::string& where)
      : lib_(std::move(lib)), binding_(std::make_unique<detail::HostBinding>(lib_->id(), &services)) {
    const auto& e = lib_->entry();
    if (config.is_null()) config = boost::json::object();
    if (e.config_schema.size) {
      auto schema = config::parse(sv(e.config_schema), lib_->path() + " config_schema");
      config::check(config, schema, where, "config", /*fill_defaults=*/true);
    } else if (!config.is_object() || !config.as_object().empty()) {
      throw ConfigError(where + ": config: plugin '" + lib_->id() + "' takes no config keys");
    }
    config_ = boost::json::serialize(config);
    void* self = nullptr;
    ember_status_t rc = e.create(&binding_->table, cstr(config_), &self);
    if (rc != EMBER_OK || !self) {
      if (rc == EMBER_OK) rc = EMBER_E_FAILED;  // "succeeded" without an instance
      throw RuntimeError(plugin_failure(lib_->id(), "create", e.last_error, nullptr, rc) + " (plugin file " +
                         lib_->path() + ")");
    }
    self_ = self;
    // Adopt every interface now, before the host calls into any of them: a broken table refuses
    // the plugin here, once, instead of crashing the run at the first call of a null slot.
    std::string why = adopt<ember_callbacks_v1_t>();
    if (why.empty()) why = adopt<ember_logger_v1_t>();
    if (why.empty()) why = adopt<ember_state_v1_t>();
    if (why.empty()) why = adopt<ember_storage_v1_t>();
    if (why.empty()) why = adopt<ember_media_v1_t>();
    if (why.empty()) why = adopt<ember_checkpoints_v1_t>();
    if (!why.empty()) {
      e.destroy(self_);
      self_ = nullptr;
      throw RuntimeError("plugin " + lib_->id() + " (" + lib_->path() + "): refused: " + why);
    }
  }
  ~PluginInstance() {
    if (self_) lib_->entry().destroy(self_);
  }
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  const std::string& id() const { return binding_->plugin_id; }
  const PluginLibrary& library() const { return *lib_; }
  void* self() const { return self_; }
  const std::string& config_json() const { return config_; }

  // The interface table, or null. For the interfaces the host knows (callbacks, logger, state,
  // storage, media) this is the host-side copy made at creation: full size, required slots
  // present, optional slots null when absent. Other tables (a model's) are the plugin's own;
  // those smaller than their size field and one slot are refused.
  template <class Table>
  const Table* interface(std::string_view interface_id) const {
    if constexpr (is_adopted<Table>::value) {
      if (interface_id == InterfaceSpec<Table>::id) {
        const auto& t = std::get<std::optional<Table>>(tables_);
        return t ? &*t : nullptr;
      }
    }
    const void* t = lib_->entry().get_interface(self_, cstr(interface_id));
    if (!t) return nullptr;
    auto* table = static_cast<const Table*>(t);
    if (table->struct_size < 2 * sizeof(void*))  // the size field, padded, and one slot
      throw RuntimeError("plugin " + id() + ": interface " + std::string(interface_id) +
                         " table is too small (" + std::to_string(table->struct_size) + " bytes)");
    return table;
  }

  std::string last_error() const { return std::string(sv(lib_->entry().last_error(self_))); }
  // "ID: WHAT failed: MESSAGE" for a failed call on this instance (registry.hpp's plugin_failure).
  std::string failure(std::string_view what, ember_status_t rc) const {
    return plugin_failure(id(), what, lib_->entry().last_error, self_, rc);
  }

  // Put this instance's hooks in the registry (if it offers callbacks).
  void register_hooks(HookRegistry& registry) const {
    if (auto* cb = interface<ember_callbacks_v1_t>(EMBER_CALLBACKS_V1)) {
      auto owner = registry.add_owner(id(), lib_->entry().last_error, self_);
      registry.add_table(owner, *cb, self_);
    }
  }

 private:
  template <class Table>
  std::string adopt() {
    const char* iid = InterfaceSpec<Table>::id;
    const void* raw = lib_->entry().get_interface(self_, cstr(iid));
    if (!raw) return {};
    Table table;
    if (std::string why = adopt_table(raw, table); !why.empty()) return std::string("interface ") + iid + ": " + why;
    std::get<std::optional<Table>>(tables_) = table;
    return {};
  }

  std::shared_ptr<PluginLibrary> lib_;  // declared first: released last
  std::unique_ptr<detail::HostBinding> binding_;
  std::string config_;
  void* self_ = nullptr;
  std::tuple<std::optional<ember_callbacks_v1_t>, std::optional<ember_logger_v1_t>, std::optional<ember_state_v1_t>,
             std::optional<ember_storage_v1_t>, std::optional<ember_media_v1_t>,
             std::optional<ember_checkpoints_v1_t>>
      tables_;  // adopted at creation
};

}  // namespace ember
