// Checkpoint pieces: JSON <-> IValue, optimizer and scheduler state in PyTorch's layout, and the
// state_dict check that refuses a checkpoint from another model.
#pragma once

#include <ember/error.hpp>
#include <ember/module.hpp>

#include <ember/storage.hpp>

#include <boost/json.hpp>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <exception>

#include <algorithm>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace ember::ckpt {

inline constexpr std::int64_t kFormatVersion = 1;

inline torch::IValue to_ivalue(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null: return torch::IValue();
    case boost::json::kind::bool_: return v.as_bool();
    case boost::json::kind::int64: return v.as_int64();
    case boost::json::kind::uint64: return static_cast<std::int64_t>(v.as_uint64());
    case boost::json::kind::double_: return v.as_double();
    case boost::json::kind::string: return std::string(v.as_string());
    case boost::json::kind::array: {
      c10::impl::GenericList l(c10::AnyType::get());
      for (const auto& e : v.as_array()) l.push_back(to_ivalue(e));
      return l;
    }
    case boost::json::kind::object: {
      c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
      for (const auto& kv : v.as_object()) d.insert(std::string(kv.key()), to_ivalue(kv.value()));
      return d;
    }
  }
  return torch::IValue();
}

inline c10::impl::GenericDict new_dict() {
  return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get());
}

inline torch::IValue get(const c10::impl::GenericDict& d, const std::string& key) {
  auto it = d.find(key);
  if (it == d.end()) throw RuntimeError("checkpoint has no key '" + key + "'");
  return it->value();
}

// Serialise v straight into out, in the format torch::pickle_save writes (and Python's
// torch.load reads): the pickle program is buffered (it holds no tensor data), each tensor's
// storage goes from the tensor to the writer as one zip record. No second copy of the model.
inline void write_pickle(const torch::IValue& v, storage::Writer& out) {
  std::vector<char> program;
  torch::jit::Pickler pickler([&](const char* b, std::size_t n) { program.insert(program.end(), b, b + n); });
  pickler.protocol();
  pickler.pushIValue(v);
  pickler.stop();
  // A failing writer must not throw through the zip library's C code: remember the failure,
  // swallow the rest, and rethrow once the archive is closed.
  std::exception_ptr failure;
  {
    caffe2::serialize::PyTorchStreamWriter zip([&](const void* p, std::size_t n) -> std::size_t {
      if (!failure) {
        try {
          out.write(p, n);
        } catch (...) {
          failure = std::current_exception();
        }
      }
      return n;
    });
    torch::jit::writeArchiveAndTensors("data", program.data(), program.size(), pickler.tensorData(), zip);
    zip.writeEndOfFile();
  }
  if (failure) std::rethrow_exception(failure);
}

// optimizer.state_dict() in PyTorch's layout: {"state": {i: {...}}, "param_groups": [...]}.
inline torch::IValue optimizer_state(torch::optim::Optimizer& opt) {
  c10::impl::GenericDict state(c10::IntType::get(), c10::AnyType::get());
  c10::impl::GenericList groups(c10::AnyType::get());
  std::int64_t index = 0;
  for (auto& g : opt.param_groups()) {
    auto gd = new_dict();
    c10::impl::GenericList ids(c10::AnyType::get());
    gd.insert("lr", g.options().get_lr());
    if (auto* o = dynamic_cast<torch::optim::AdamOptions*>(&g.options())) {
      gd.insert("betas", c10::ivalue::Tuple::create({std::get<0>(o->betas()), std::get<1>(o->betas())}));
      gd.insert("eps", o->eps()), gd.insert("weight_decay", o->weight_decay()), gd.insert("amsgrad", o->amsgrad());
    } else if (auto* o = dynamic_cast<torch::optim::AdamWOptions*>(&g.options())) {
      gd.insert("betas", c10::ivalue::Tuple::create({std::get<0>(o->betas()), std::get<1>(o->betas())}));
      gd.insert("eps", o->eps()), gd.insert("weight_decay", o->weight_decay()), gd.insert("amsgrad", o->amsgrad());
    } else if (auto* o = dynamic_cast<torch::optim::SGDOptions*>(&g.options())) {
      gd.insert("momentum", o->momentum()), gd.insert("dampening", o->dampening());
      gd.insert("weight_decay", o->weight_decay()), gd.insert("nesterov", o->nesterov());
    }
    for (auto& p : g.params()) {
      auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = opt.state().find(key);
      if (it != opt.state().end()) {
        auto sd = new_dict();
        if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
          sd.insert("step", torch::tensor(static_cast<double>(a->step()), torch::kFloat32));
          sd.insert("exp_avg", a->exp_avg()), sd.insert("exp_avg_sq", a->exp_avg_sq());
          if (a->max_exp_avg_sq().defined()) sd.insert("max_exp_avg_sq", a->max_exp_avg_sq());
        } else if (auto* a = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
          sd.insert("step", torch::tensor(static_cast<double>(a->step()), torch::kFloat32));
          sd.insert("exp_avg", a->exp_avg()), sd.insert("exp_avg_sq", a->exp_avg_sq());
          if (a->max_exp_avg_sq().defined()) sd.insert("max_exp_avg_sq", a->max_exp_avg_sq());
        } else if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
          if (s->momentum_buffer().defined()) sd.insert("momentum_buffer", s->momentum_buffer());
        }
        state.insert(index, sd);
      }
      ids.push_back(index++);
    }
    gd.insert("params", ids);
    groups.push_back(gd);
  }
  auto out = new_dict();
  out.insert("state", state);
  out.insert("param_groups", groups);
  return out;
}

inline void load_optimizer_state(torch::optim::Optimizer& opt, const torch::IValue& v) {
  auto d = v.toGenericDict();
  auto state = get(d, "state").toGenericDict();
  auto groups = get(d, "param_groups").toList();
  if (groups.size() != opt.param_groups().size())
    throw RuntimeError("checkpoint optimizer has " + std::to_string(groups.size()) +
                       " param groups, the model's optimizer has " + std::to_string(opt.param_groups().size()));
  std::int64_t index = 0;
  for (std::size_t gi = 0; gi < opt.param_groups().size(); ++gi) {
    auto& g = opt.param_groups()[gi];
    auto gd = groups.get(gi).toGenericDict();
    g.options().set_lr(get(gd, "lr").toDouble());
    for (auto& p : g.params()) {
      auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state.find(index++);
      if (it == state.end()) continue;
      auto sd = it->value().toGenericDict();
      auto has = [&](const char* k) { return sd.find(k) != sd.end(); };
      auto step = has("step") ? static_cast<std::int64_t>(get(sd, "step").toTensor().item<double>()) : 0;
      if (dynamic_cast<torch::optim::Adam*>(&opt)) {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->step(step), s->exp_avg(get(sd, "exp_avg").toTensor().clone()), s->exp_avg_sq(get(sd, "exp_avg_sq").toTensor().clone());
        if (has("max_exp_avg_sq")) s->max_exp_avg_sq(get(sd, "max_exp_avg_sq").toTensor().clone());
        opt.state()[key] = std::move(s);
      } else if (dynamic_cast<torch::optim::AdamW*>(&opt)) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(step), s->exp_avg(get(sd, "exp_avg").toTensor().clone()), s->exp_avg_sq(get(sd, "exp_avg_sq").toTensor().clone());
        if (has("max_exp_avg_sq")) s->max_exp_avg_sq(get(sd, "max_exp_avg_sq").toTensor().clone());
        opt.state()[key] = std::move(s);
      } else if (dynamic_cast<torch::optim::SGD*>(&opt)) {
        auto s = std::make_unique<torch::optim::SGDParamState>();
        if (has("momentum_buffer")) s->momentum_buffer(get(sd, "momentum_buffer").toTensor().clone());
        opt.state()[key] = std::move(s);
      }
    }
  }
}

// The module's state_dict (parameters then buffers): detached views, not copies; valid while
// the module is not stepped (checkpoints are written synchronously on the training thread).
inline c10::impl::GenericDict state_dict(Module& m) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::TensorType::get());
  for (auto& kv : m.named_parameters()) d.insert(kv.first, kv.second.detach());
  for (auto& kv : m.named_buffers()) d.insert(kv.first, kv.second.detach());
  return d;
}

// Copy a checkpoint's state_dict into the module, or refuse listing every mismatch.
inline void load_state_dict(Module& m, const c10::impl::GenericDict& sd, const std::string& url) {
  std::vector<std::pair<std::string, torch::Tensor>> mine = m.named_parameters();
  for (auto& b : m.named_buffers()) mine.push_back(b);
  std::vector<std::string> missing, shape;
  std::set<std::string> known;
  for (auto& [name, t] : mine) {
    known.insert(name);
    auto it = sd.find(name);
    if (it == sd.end()) {
      missing.push_back(name);
      continue;
    }
    auto other = it->value().toTensor();
    if (other.sizes() != t.sizes()) {
      std::ostringstream s;
      s << name << " (checkpoint " << other.sizes() << ", model " << t.sizes() << ")";
      shape.push_back(s.str());
    }
  }
  std::vector<std::string> extra;
  for (const auto& kv : sd)
    if (!known.count(kv.key().toStringRef())) extra.push_back(kv.key().toStringRef());
  std::sort(extra.begin(), extra.end());
  if (!missing.empty() || !extra.empty() || !shape.empty()) {
    std::string msg = url + ": checkpoint does not fit this model:";
    auto list = [&](const char* what, const std::vector<std::string>& v) {
      if (v.empty()) return;
      msg += std::string("\n  ") + what + ":";
      for (const auto& s : v) msg += " " + s;
    };
    list("missing keys", missing);
    list("unexpected keys", extra);
    list("mis-shaped", shape);
    throw RuntimeError(msg);
  }
  torch::NoGradGuard ng;
  for (auto& [name, t] : mine) t.copy_(sd.at(name).toTensor());
}

}  // namespace ember::ckpt
