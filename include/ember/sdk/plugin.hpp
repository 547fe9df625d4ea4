// Write an Ember plugin as a C++ class. Header-only; needs only ember/abi.h (no libtorch).
//
//   class MyLogger : public ember::plugin::Plugin,
//                    public ember::plugin::Callbacks,
//                    public ember::plugin::Logger {
//    public:
//     MyLogger(const ember_host_t* host, std::string_view config_json);
//     void on_train_epoch_end(const ember_hook_args_t& args) override;
//     void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* m, size_t n) override;
//   };
//   EMBER_PLUGIN(MyLogger, "my_logger", "1.0.0", "What it does", R"({"type":"object"})")
//
// A storage plugin derives from Storage as well and names its schemes in `kSchemes`.
//
// The macro exports `ember_plugin_entry`. Every call from the host lands in a catch-all: an
// exception (construction included) becomes a status plus last_error, never an unwind across C.
// Only the hooks the class overrides are put in its callbacks table; the rest cost nothing.
#pragma once

#include <ember/abi.h>
#include <ember/callback.hpp>

#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace ember::plugin {

constexpr std::string_view view(ember_str_t s) { return {s.data ? s.data : "", s.size}; }
constexpr ember_str_t str(std::string_view s) { return {s.data(), s.size()}; }

namespace detail {
// The message last_error returns: one per thread, shared by every instance of the plugin (and by
// create, which has no instance yet). Storage functions are [any-thread] — the csv worker, a
// W&B spool and a checkpoint save may fail at once on one instance — so a per-instance string
// would be written by one thread while another copies it. Per thread, "valid until the next call
// on this thread" holds without a lock, as on the host side (loader.hpp's HostBinding).
inline std::string& thread_error() {
  static thread_local std::string error;
  return error;
}
}  // namespace detail

// The base every plugin class derives from: holds the host table; records failures.
class Plugin {
 public:
  explicit Plugin(const ember_host_t* host) : host_(host) {}
  virtual ~Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const ember_host_t& host() const { return *host_; }
  void log(ember_log_level_t level, std::string_view message) const {
    host_->log(host_->ctx, level, str(message));
  }
  // Record a failure for last_error on the calling thread; returns the status to hand back.
  ember_status_t fail(ember_status_t status, std::string message) {
    detail::thread_error() = std::move(message);
    return status;
  }
  // The message of the last failure recorded on this thread (what the host's last_error reads).
  static const std::string& last_error() { return detail::thread_error(); }

  // Data parallel (host 1.1; an older host is one process). Collectives: every rank calls them
  // in the same order. A failure throws std::runtime_error with the host's message.
  int global_rank() const { return EMBER_HOST_HAS(host_, global_rank) ? host_->global_rank : 0; }
  int world_size() const { return EMBER_HOST_HAS(host_, world_size) ? host_->world_size : 1; }
  bool is_global_zero() const { return global_rank() == 0; }
  // Rank 0's value of *value on every rank (a trivially copyable T).
  template <class T>
  void broadcast_from_zero(T& value) const {
    static_assert(std::is_trivially_copyable_v<T>, "broadcast bytes only");
    if (world_size() <= 1 || !EMBER_HOST_HAS(host_, broadcast)) return;
    if (host_->broadcast(host_->ctx, &value, sizeof value, 0) != EMBER_OK)
      throw std::runtime_error("broadcast from rank 0 failed: " + std::string(view(host_->last_error(host_->ctx))));
  }
  void broadcast_from_zero(std::string& value) const {
    if (world_size() <= 1) return;
    std::uint64_t n = value.size();
    broadcast_from_zero(n);
    value.resize(static_cast<std::size_t>(n));
    if (n && host_->broadcast(host_->ctx, value.data(), value.size(), 0) != EMBER_OK)
      throw std::runtime_error("broadcast from rank 0 failed: " + std::string(view(host_->last_error(host_->ctx))));
  }

 private:
  const ember_host_t* host_;
};

// Lightning's Callback: override the hooks you need (the same base in-process callbacks use).
using Callbacks = ::ember::Callback;

// Lightning's Logger.
class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log_hyperparams(std::string_view /*params_json*/) {}
  virtual void log_metrics(const ember_log_context_t& ctx, const ember_metric_t* metrics,
                           size_t count) = 0;
  virtual void after_save_checkpoint(std::string_view /*url*/) {}
  virtual void save() {}
  virtual void finalize(std::string_view /*status*/) {}
};

// Rich media, "ember.media/1" (Lightning's WandbLogger.log_image / log_table, watch's
// histograms). Arguments are borrowed for the call; throw std::invalid_argument for a bad
// argument (the host gets EMBER_E_INVALID and the message).
class Media {
 public:
  virtual ~Media() = default;
  virtual void log_image(const ember_log_context_t& ctx, std::string_view key, const ember_image_t* images,
                         size_t count) = 0;
  virtual void log_table(const ember_log_context_t& ctx, std::string_view key, std::string_view columns_json,
                         std::string_view rows_json) = 0;
  virtual void log_histogram(const ember_log_context_t& ctx, std::string_view key, const DLTensor& values,
                             int32_t num_bins) = 0;
};

// A failure with its own status code, for any call: throw it where EMBER_E_FAILED would say too
// little (the catch-all hands the status and the message to the host).
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, ember_status_t status) : std::runtime_error(message), status_(status) {}
  ember_status_t status() const { return status_; }

 private:
  ember_status_t status_;
};
// "No such object": EMBER_E_NOT_FOUND, which storage's stat and remove must answer for what is absent.
class NotFound : public Error {
 public:
  explicit NotFound(const std::string& message) : Error(message, EMBER_E_NOT_FOUND) {}
};

// A storage backend, "ember.storage/1" (fsspec's AbstractFileSystem): the URL schemes the class
// serves in `static constexpr std::string_view kSchemes = "s3";` (comma-separated), and the five
// operations below. The helper writes the nine C functions of abi/storage.h and their catch-all:
// an exception becomes a status and last_error (Error keeps its status, NotFound is
// EMBER_E_NOT_FOUND, std::invalid_argument EMBER_E_INVALID, std::bad_alloc EMBER_E_NOMEM, others
// EMBER_E_FAILED). Every function is [any-thread]: the class synchronises its own state.
class Storage {
 public:
  // An open reader or writer, owned by the host until it closes it (the helper deletes it then).
  // Deleting a writer that was not committed aborts it: the previous object stays untouched.
  class File {
   public:
    virtual ~File() = default;
    // Up to cap bytes; 0 at the end.
    virtual std::size_t read(void* /*buf*/, std::size_t /*cap*/) {
      throw Error("read: the file was opened for writing", EMBER_E_INVALID);
    }
    virtual void write(const void* /*data*/, std::size_t /*size*/) {
      throw Error("write: the file was opened for reading", EMBER_E_INVALID);
    }
    // Publish what was written under the final URL, atomically.
    virtual void commit() { throw Error("commit: the file was opened for reading", EMBER_E_INVALID); }
  };
  struct Entry {
    std::string url;  // the object's full URL
    bool is_dir = false;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;  // 0 if unknown
  };

  virtual ~Storage() = default;
  // Bytes [offset, offset+length) of url; length UINT64_MAX: to the end.
  virtual std::unique_ptr<File> open_read(std::string_view url, std::uint64_t offset, std::uint64_t length) = 0;
  virtual std::unique_ptr<File> open_write(std::string_view url) = 0;
  // Throw NotFound when url is absent.
  virtual Entry stat(std::string_view url) = 0;
  // Each entry one level under prefix, like `ls`; stop when fn returns false.
  virtual void list(std::string_view prefix, const std::function<bool(const Entry&)>& fn) = 0;
  // Throw NotFound when url is absent.
  virtual void remove(std::string_view url) = 0;
};

// "ember.checkpoints/1": a plugin that keeps checkpoints says where "last" / "best" are, so the
// host (ckpt_path) and other plugins never read its private index.
class CheckpointIndex {
 public:
  virtual ~CheckpointIndex() = default;
  // The URL of the checkpoint named which ("last", "best"); throw NotFound when there is none.
  virtual std::string resolve_checkpoint(std::string_view which) = 0;
};

// Callback.state_dict / load_state_dict: JSON text saved in checkpoints under the plugin id.
class State {
 public:
  virtual ~State() = default;
  virtual std::string state_dict() = 0;
  virtual void load_state_dict(std::string_view json) = 0;
};

namespace detail {

template <class T>
const void* model_interface(std::string_view id);

// Run f; turn any exception into a status and the plugin's last_error.
template <class F>
ember_status_t guarded(Plugin* p, F&& f) noexcept {
  try {
    f();
    return EMBER_OK;
  } catch (const Error& e) {
    return p->fail(e.status(), e.what());
  } catch (const std::bad_alloc&) {
    return p->fail(EMBER_E_NOMEM, "out of memory");
  } catch (const std::exception& e) {
    return p->fail(EMBER_E_FAILED, e.what());
  } catch (...) {
    return p->fail(EMBER_E_FAILED, "unknown exception");
  }
}

// guarded, with std::invalid_argument reported as EMBER_E_INVALID (the media contract).
template <class F>
ember_status_t guarded_args(Plugin* p, F&& f) noexcept {
  try {
    f();
    return EMBER_OK;
  } catch (const std::invalid_argument& e) {
    return p->fail(EMBER_E_INVALID, e.what());
  } catch (...) {
    return guarded(p, [] { throw; });  // rethrows the exception being handled: the usual mapping
  }
}

template <class T>
struct Exports {
  static ember_status_t create(const ember_host_t* host, ember_str_t config, void** out) noexcept {
    *out = nullptr;
    try {
      T* p = new T(host, view(config));
      *out = static_cast<Plugin*>(p);
      return EMBER_OK;
    } catch (const std::exception& e) {
      thread_error() = e.what();
    } catch (...) {
      thread_error() = "unknown exception in constructor";
    }
    return EMBER_E_FAILED;
  }
  static T* self(void* s) { return static_cast<T*>(static_cast<Plugin*>(s)); }
  static void destroy(void* s) noexcept {
    try {
      delete self(s);
    } catch (...) {
    }
  }
  // self is not needed: the message is per thread (see thread_error). With self NULL it is
  // create's message, recorded the same way.
  static ember_str_t last_error(void*) noexcept { return str(thread_error()); }

  // --- callbacks: one thunk per hook, placed only if T overrides it.
#define EMBER_HOOK(name, since, doc)                                                  \
  static ember_status_t hook_##name(void* s, const ember_hook_args_t* a) noexcept {   \
    T* t = self(s);                                                                  \
    return guarded(t, [&] { t->name(*a); });                                          \
  }                                                                                   \
  static constexpr bool overrides_##name() {                                          \
    if constexpr (std::is_base_of_v<Callbacks, T>)                                    \
      return !std::is_same_v<decltype(&T::name), decltype(&Callbacks::name)>;         \
    else                                                                              \
      return false;                                                                   \
  }
#include <ember/abi/hooks.def>

  static const ember_callbacks_v1_t* callbacks() {
    static const ember_callbacks_v1_t table = [] {
      ember_callbacks_v1_t t;
      std::memset(&t, 0, sizeof t);
      t.struct_size = sizeof t;
#define EMBER_HOOK(name, since, doc) \
  if constexpr (overrides_##name()) t.name = &hook_##name;
#include <ember/abi/hooks.def>
      return t;
    }();
    return &table;
  }

  // --- logger
  static ember_status_t log_hyperparams(void* s, ember_str_t p) noexcept {
    T* t = self(s);
    return guarded(t, [&] { t->log_hyperparams(view(p)); });
  }
  static ember_status_t log_metrics(void* s, const ember_log_context_t* c, const ember_metric_t* m,
                                    size_t n) noexcept {
    T* t = self(s);
    return guarded(t, [&] { t->log_metrics(*c, m, n); });
  }
  static ember_status_t after_save_checkpoint(void* s, ember_str_t url) noexcept {
    T* t = self(s);
    return guarded(t, [&] { t->after_save_checkpoint(view(url)); });
  }
  static ember_status_t save(void* s) noexcept {
    T* t = self(s);
    return guarded(t, [&] { t->save(); });
  }
  static ember_status_t finalize(void* s, ember_str_t status) noexcept {
    T* t = self(s);
    return guarded(t, [&] { t->finalize(view(status)); });
  }
  static const ember_logger_v1_t* logger() {
    static const ember_logger_v1_t table = {sizeof(ember_logger_v1_t), &log_hyperparams,
                                            &log_metrics, &after_save_checkpoint, &save, &finalize};
    return &table;
  }

  // --- media
  static const ember_log_context_t& context(const ember_log_context_t* c) {
    if (!c) throw std::invalid_argument("the log context is NULL");
    return *c;
  }
  static ember_status_t log_image(void* s, const ember_log_context_t* c, ember_str_t key, const ember_image_t* images,
                                  size_t n) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] { t->log_image(context(c), view(key), images, n); });
  }
  static ember_status_t log_table(void* s, const ember_log_context_t* c, ember_str_t key, ember_str_t columns,
                                  ember_str_t rows) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] { t->log_table(context(c), view(key), view(columns), view(rows)); });
  }
  static ember_status_t log_histogram(void* s, const ember_log_context_t* c, ember_str_t key, const DLTensor* values,
                                      int32_t bins) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!values) throw std::invalid_argument("log_histogram: values is NULL");
      t->log_histogram(context(c), view(key), *values, bins);
    });
  }
  static const ember_media_v1_t* media() {
    static const ember_media_v1_t table = {sizeof(ember_media_v1_t), &log_image, &log_table, &log_histogram};
    return &table;
  }

  // --- state
  static ember_status_t state_dict(void* s, const ember_sink_t* sink) noexcept {
    T* t = self(s);
    ember_status_t rc = guarded(t, [&] {
      std::string json = t->state_dict();
      ember_status_t w = sink->write(sink->ctx, json.data(), json.size());
      if (w != EMBER_OK) throw std::runtime_error("the host refused the state bytes");
    });
    return rc;
  }
  static ember_status_t load_state_dict(void* s, ember_str_t json) noexcept {
    T* t = self(s);
    return guarded(t, [&] { t->load_state_dict(view(json)); });
  }
  static const ember_state_v1_t* state() {
    static const ember_state_v1_t table = {sizeof(ember_state_v1_t), &state_dict, &load_state_dict};
    return &table;
  }

  // --- checkpoint index
  static ember_status_t ck_resolve(void* s, ember_str_t which, const ember_sink_t* sink) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!sink) throw std::invalid_argument("resolve: sink is NULL");
      std::string url = t->resolve_checkpoint(view(which));
      if (sink->write(sink->ctx, url.data(), url.size()) != EMBER_OK)
        throw std::runtime_error("the host refused the checkpoint URL");
    });
  }
  static const ember_checkpoints_v1_t* checkpoints() {
    static const ember_checkpoints_v1_t table = {sizeof(ember_checkpoints_v1_t), &ck_resolve};
    return &table;
  }

  // --- storage: the C functions over Storage's virtuals; a File crosses as ember_file_t*.
  static ember_file_t* to_c(std::unique_ptr<Storage::File> f) {
    if (!f) throw Error("open returned no file", EMBER_E_FAILED);
    return reinterpret_cast<ember_file_t*>(f.release());
  }
  static Storage::File& from_c(ember_file_t* f) {
    if (!f) throw std::invalid_argument("the file is NULL");
    return *reinterpret_cast<Storage::File*>(f);
  }
  static ember_stat_t to_c(const Storage::Entry& e) {
    ember_stat_t st{};
    st.struct_size = sizeof st;
    st.is_dir = e.is_dir ? 1 : 0;
    st.size = e.size;
    st.mtime_ns = e.mtime_ns;
    st.url = str(e.url);
    return st;
  }
  static ember_status_t st_open_read(void* s, ember_str_t url, uint64_t offset, uint64_t length,
                                     ember_file_t** out) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!out) throw std::invalid_argument("open_read: out is NULL");
      *out = nullptr;
      *out = to_c(t->open_read(view(url), offset, length));
    });
  }
  static ember_status_t st_read(void* s, ember_file_t* f, void* buf, size_t cap, size_t* got) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!got) throw std::invalid_argument("read: got is NULL");
      *got = 0;
      *got = from_c(f).read(buf, cap);
    });
  }
  static ember_status_t st_open_write(void* s, ember_str_t url, ember_file_t** out) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!out) throw std::invalid_argument("open_write: out is NULL");
      *out = nullptr;
      *out = to_c(t->open_write(view(url)));
    });
  }
  static ember_status_t st_write(void* s, ember_file_t* f, const void* data, size_t size) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] { from_c(f).write(data, size); });
  }
  static ember_status_t st_commit(void* s, ember_file_t* f) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] { from_c(f).commit(); });
  }
  static void st_close(void*, ember_file_t* f) noexcept {
    try {
      delete reinterpret_cast<Storage::File*>(f);
    } catch (...) {
    }
  }
  static ember_status_t st_stat(void* s, ember_str_t url, ember_stat_t* out) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!out) throw std::invalid_argument("stat: out is NULL");
      // out->url is borrowed until the next call on this thread: keep the text per thread.
      static thread_local Storage::Entry last;
      last = t->stat(view(url));
      *out = to_c(last);
    });
  }
  static ember_status_t st_list(void* s, ember_str_t prefix, ember_list_fn fn, void* user) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] {
      if (!fn) throw std::invalid_argument("list: fn is NULL");
      t->list(view(prefix), [&](const Storage::Entry& e) {
        const ember_stat_t st = to_c(e);
        return fn(user, &st) == 0;
      });
    });
  }
  static ember_status_t st_remove(void* s, ember_str_t url) noexcept {
    T* t = self(s);
    return guarded_args(t, [&] { t->remove(view(url)); });
  }
  static const ember_storage_v1_t* storage() {
    static const ember_storage_v1_t table = {sizeof(ember_storage_v1_t), str(T::kSchemes), &st_open_read,
                                             &st_read, &st_open_write, &st_write, &st_commit, &st_close,
                                             &st_stat, &st_list, &st_remove};
    return &table;
  }

  static const void* get_interface(void* s, ember_str_t id) noexcept {
    std::string_view want = view(id);
    (void)s;
    if constexpr (is_model<T>::value) {
      if (const void* m = ::ember::plugin::detail::model_interface<T>(want)) return m;
      return nullptr;  // a model's hooks run as the module's, not as a callback plugin's
    }
    if constexpr (std::is_base_of_v<Callbacks, T>)
      if (want == EMBER_CALLBACKS_V1) return callbacks();
    if constexpr (std::is_base_of_v<Logger, T>)
      if (want == EMBER_LOGGER_V1) return logger();
    if constexpr (std::is_base_of_v<State, T>)
      if (want == EMBER_STATE_V1) return state();
    if constexpr (std::is_base_of_v<Media, T>)
      if (want == EMBER_MEDIA_V1) return media();
    if constexpr (std::is_base_of_v<Storage, T>)
      if (want == EMBER_STORAGE_V1) return storage();
    if constexpr (std::is_base_of_v<CheckpointIndex, T>)
      if (want == EMBER_CHECKPOINTS_V1) return checkpoints();
    if constexpr (has_extra_interfaces<T>::value) return T::extra_interface(self(s), want);
    return nullptr;
  }

  template <class U, class = void>
  struct is_model : std::false_type {};
  template <class U>
  struct is_model<U, std::void_t<decltype(&U::configure_optimizers)>> : std::true_type {};

  template <class U, class = void>
  struct has_extra_interfaces : std::false_type {};
  template <class U>
  struct has_extra_interfaces<U, std::void_t<decltype(&U::extra_interface)>> : std::true_type {};
};

}  // namespace detail
}  // namespace ember::plugin

// Export the entry for class T. SCHEMA is the JSON Schema of the plugin's config (a string).
// A class may add interfaces with `static const void* extra_interface(T*, std::string_view id)`.
#define EMBER_PLUGIN_TAGGED(T, ID, VERSION, DESCRIPTION, SCHEMA, BUILD_TAG)                 \
  extern "C" EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry;                   \
  extern "C" EMBER_EXPORT const ember_plugin_entry_t ember_plugin_entry = {                \
      EMBER_ABI_MAJOR,                                                                     \
      EMBER_ABI_MINOR,                                                                     \
      sizeof(ember_plugin_entry_t),                                                        \
      ::ember::plugin::str(ID),                                                            \
      ::ember::plugin::str(VERSION),                                                       \
      ::ember::plugin::str(DESCRIPTION),                                                   \
      ::ember::plugin::str(SCHEMA),                                                        \
      ::ember::plugin::str(BUILD_TAG),                                                     \
      &::ember::plugin::detail::Exports<T>::create,                                        \
      &::ember::plugin::detail::Exports<T>::destroy,                                       \
      &::ember::plugin::detail::Exports<T>::get_interface,                                 \
      &::ember::plugin::detail::Exports<T>::last_error};

#define EMBER_PLUGIN(T, ID, VERSION, DESCRIPTION, SCHEMA) \
  EMBER_PLUGIN_TAGGED(T, ID, VERSION, DESCRIPTION, SCHEMA, "")
