// The host side of the ember_host table: Services (what the host offers plugins; the trainer
// overrides the parts it owns) and detail::HostBinding, the C trampolines that reach them and
// keep the per-thread last_error. Part of ember/loader.hpp.
#pragma once

#include <ember/loader/library.hpp>

namespace ember {

// What the host offers plugins; the trainer overrides the parts it owns.
class Services {
 public:
  virtual ~Services() = default;
  virtual void log(const std::string& plugin_id, int level, std::string_view message) {
    static const char* const names[] = {"debug", "info", "warning", "error"};
    const char* lvl = (level >= 0 && level <= 3) ? names[level] : "info";
    std::cerr << "[" << plugin_id << "] " << lvl << ": " << message << "\n";
  }
  virtual void fill_state(ember_trainer_state_t& out) {
    out.stage = EMBER_STAGE_NONE;
    out.max_epochs = out.max_steps = out.num_training_batches = out.num_val_batches = -1;
  }
  virtual std::optional<double> metric(std::string_view) { return std::nullopt; }
  virtual void for_each_metric(const std::function<bool(std::string_view, double)>&) {}
  virtual void for_each_progress_metric(const std::function<bool(std::string_view, double)>&) {}
  virtual void request_stop(const std::string& plugin_id, std::string_view reason) {
    log(plugin_id, EMBER_LOG_INFO, "asked to stop: " + std::string(reason));
  }
  virtual storage::UrlSpace& urls() { return urls_; }
  virtual void save_checkpoint(const std::string& url, bool /*weights_only*/) {
    throw RuntimeError("cannot save checkpoint " + url + ": no trainer is running");
  }
  // Data parallel (host table since 1.1): one process unless the trainer runs under ddp.
  virtual RankInfo rank_info() { return {}; }
  virtual void barrier() {}
  virtual void broadcast(void* /*data*/, std::size_t /*size*/, int /*root*/) {}
  virtual void all_reduce(double* /*values*/, std::size_t /*n*/, ReduceOp /*op*/) {}

 private:
  storage::UrlSpace urls_;
};

namespace detail {

// The per-instance host table and its context.
struct HostBinding {
  ember_host_t table{};
  std::string plugin_id;
  Services* services = nullptr;
  static thread_local std::string last_error;

  struct File {
    std::unique_ptr<storage::Reader> reader;
    std::unique_ptr<storage::Writer> writer;
  };

  static HostBinding& of(void* ctx) { return *static_cast<HostBinding*>(ctx); }

  template <class F>
  static ember_status_t guard(F&& f) noexcept {
    try {
      return f();
    } catch (const std::exception& e) {
      last_error = e.what();
    } catch (...) {
      last_error = "unknown error";
    }
    return EMBER_E_IO;
  }

  HostBinding(std::string id, Services* s) : plugin_id(std::move(id)), services(s) {
    table.struct_size = sizeof(ember_host_t);
    table.abi_major = EMBER_ABI_MAJOR;
    table.abi_minor = EMBER_ABI_MINOR;
    table.ctx = this;
    table.host_version = cstr(kVersion);
    table.log = [](void* c, int32_t level, ember_str_t m) {
      try {
        of(c).services->log(of(c).plugin_id, level, sv(m));
      } catch (...) {
      }
    };
    table.get_state = [](void* c, ember_trainer_state_t* out) -> ember_status_t {
      if (!out || out->struct_size < offsetof(ember_trainer_state_t, default_root_dir)) {
        last_error = "get_state: out->struct_size is too small";
        return EMBER_E_INVALID;
      }
      return guard([&] {
        ember_trainer_state_t full{};
        full.struct_size = sizeof full;
        full.num_test_batches = full.num_predict_batches = -1;
        of(c).services->fill_state(full);
        std::size_t n = std::min<std::size_t>(out->struct_size, sizeof full);
        uint32_t keep = out->struct_size;
        std::memcpy(out, &full, n);
        out->struct_size = keep;
        return EMBER_OK;
      });
    };
    table.get_metric = [](void* c, ember_str_t name, double* out) -> ember_status_t {
      return guard([&] {
        auto v = of(c).services->metric(sv(name));
        if (!v) {
          last_error = "metric '" + std::string(sv(name)) + "' has not been logged";
          return EMBER_E_NOT_FOUND;
        }
        *out = *v;
        return EMBER_OK;
      });
    };
    table.list_metrics = [](void* c, ember_metric_fn fn, void* user) -> ember_status_t {
      return guard([&] {
        of(c).services->for_each_metric(
            [&](std::string_view n, double v) { return fn(user, cstr(n), v) == 0; });
        return EMBER_OK;
      });
    };
    table.list_progress_metrics = [](void* c, ember_metric_fn fn, void* user) -> ember_status_t {
      return guard([&] {
        of(c).services->for_each_progress_metric(
            [&](std::string_view n, double v) { return fn(user, cstr(n), v) == 0; });
        return EMBER_OK;
      });
    };
    table.request_stop = [](void* c, ember_str_t reason) {
      try {
        of(c).services->request_stop(of(c).plugin_id, sv(reason));
      } catch (...) {
      }
    };
    table.open_read = [](void* c, ember_str_t url, uint64_t off, uint64_t len,
                         ember_file_t** out) -> ember_status_t {
      return guard([&] {
        auto f = std::make_unique<File>();
        f->reader = of(c).services->urls().open_read(std::string(sv(url)), off, len);
        *out = reinterpret_cast<ember_file_t*>(f.release());
        return EMBER_OK;
      });
    };
    table.read = [](void*, ember_file_t* file, void* buf, size_t cap, size_t* got) -> ember_status_t {
      return guard([&] {
        auto* f = reinterpret_cast<File*>(file);
        if (!f->reader) throw RuntimeError("read: the file was opened for writing");
        *got = f->reader->read(buf, cap);
        return EMBER_OK;
      });
    };
    table.open_write = [](void* c, ember_str_t url, ember_file_t** out) -> ember_status_t {
      return guard([&] {
        auto f = std::make_unique<File>();
        f->writer = of(c).services->urls().open_write(std::string(sv(url)));
        *out = reinterpret_cast<ember_file_t*>(f.release());
        return EMBER_OK;
      });
    };
    table.write = [](void*, ember_file_t* file, const void* data, size_t size) -> ember_status_t {
      return guard([&] {
        auto* f = reinterpret_cast<File*>(file);
        if (!f->writer) throw RuntimeError("write: the file was opened for reading");
        f->writer->write(data, size);
        return EMBER_OK;
      });
    };
    table.commit = [](void*, ember_file_t* file) -> ember_status_t {
      return guard([&] {
        auto* f = reinterpret_cast<File*>(file);
        if (!f->writer) throw RuntimeError("commit: the file was opened for reading");
        f->writer->commit();
        return EMBER_OK;
      });
    };
    table.close = [](void*, ember_file_t* file) {
      try {
        delete reinterpret_cast<File*>(file);
      } catch (...) {
      }
    };
    table.stat = [](void* c, ember_str_t url, ember_stat_t* out) -> ember_status_t {
      return guard([&] {
        auto s = of(c).services->urls().stat(std::string(sv(url)));
        if (!s) {
          last_error = "no such object: " + std::string(sv(url));
          return EMBER_E_NOT_FOUND;
        }
        thread_local std::string url_copy;
        url_copy = s->url;
        out->is_dir = s->is_dir;
        out->size = s->size;
        out->mtime_ns = s->mtime_ns;
        out->url = cstr(url_copy);
        return EMBER_OK;
      });
    };
    table.list = [](void* c, ember_str_t prefix, ember_list_fn fn, void* user) -> ember_status_t {
      return guard([&] {
        for (const auto& s : of(c).services->urls().list(std::string(sv(prefix)))) {
          ember_stat_t st{};
          st.struct_size = sizeof st;
          st.is_dir = s.is_dir;
          st.size = s.size;
          st.mtime_ns = s.mtime_ns;
          st.url = cstr(s.url);
          if (fn(user, &st) != 0) break;
        }
        return EMBER_OK;
      });
    };
    table.remove = [](void* c, ember_str_t url) -> ember_status_t {
      return guard([&] {
        if (of(c).services->urls().remove(std::string(sv(url)))) return EMBER_OK;
        last_error = "no such object: " + std::string(sv(url));
        return EMBER_E_NOT_FOUND;
      });
    };
    table.last_error = [](void*) -> ember_str_t { return cstr(last_error); };
    table.save_checkpoint = [](void* c, ember_str_t url, int32_t weights_only) -> ember_status_t {
      return guard([&] {
        of(c).services->save_checkpoint(std::string(sv(url)), weights_only != 0);
        return EMBER_OK;
      });
    };
    const RankInfo ri = s ? s->rank_info() : RankInfo{};
    table.global_rank = ri.global_rank;
    table.local_rank = ri.local_rank;
    table.world_size = ri.world_size;
    table.barrier = [](void* c) -> ember_status_t {
      return guard([&] {
        of(c).services->barrier();
        return EMBER_OK;
      });
    };
    table.broadcast = [](void* c, void* data, size_t size, int32_t root) -> ember_status_t {
      return guard([&] {
        const int world = of(c).services->rank_info().world_size;
        if (root < 0 || root >= world) {
          last_error = "broadcast: root " + std::to_string(root) + " is outside world size " + std::to_string(world);
          return EMBER_E_INVALID;
        }
        if (size && !data) {
          last_error = "broadcast: data is null";
          return EMBER_E_INVALID;
        }
        of(c).services->broadcast(data, size, root);
        return EMBER_OK;
      });
    };
    table.all_reduce = [](void* c, double* values, size_t count, int32_t op) -> ember_status_t {
      return guard([&] {
        if (op < EMBER_REDUCE_SUM || op > EMBER_REDUCE_MIN) {
          last_error = "all_reduce: op " + std::to_string(op) + " is not an ember_reduce_op_t";
          return EMBER_E_INVALID;
        }
        if (count && !values) {
          last_error = "all_reduce: values is null";
          return EMBER_E_INVALID;
        }
        static const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min};
        of(c).services->all_reduce(values, count, ops[op]);
        return EMBER_OK;
      });
    };
  }
};
inline thread_local std::string HostBinding::last_error;

}  // namespace detail

}  // namespace ember
