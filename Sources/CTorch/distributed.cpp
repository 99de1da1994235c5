// c10d process groups (see ctorch_distributed.h). Gloo is compiled in when USE_C10D_GLOO is defined (the
// build adds it where the gloo headers are installed), NCCL with USE_C10D_NCCL (a CUDA libtorch).
#include "ctorch_distributed.h"
#include "ctorch_internal.hpp"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

struct ct_process_group_s {
  c10::intrusive_ptr<c10d::Store> store;
  // The concrete group (ProcessGroup in libtorch 1.13, Backend in 2.x): both have these collectives.
#ifdef USE_C10D_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  std::chrono::milliseconds timeout;
  int rank;

  template <typename F> void each(F &&run) {
#ifdef USE_C10D_GLOO
    if (gloo) return run(*gloo);
#endif
#ifdef USE_C10D_NCCL
    if (nccl) return run(*nccl);
#endif
    throw std::runtime_error("the process group has no backend");
  }
};

namespace {

std::vector<at::Tensor> unwrap(ct_tensor *tensors, int count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (int i = 0; i < count; ++i) out.push_back(tensors[i]->t);
  return out;
}

bool is_loopback(const std::string &host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Waits for every started collective, so that none is left running when an error is reported.
template <typename Work> void wait_all(std::vector<Work> &works, std::chrono::milliseconds timeout, const char *what) {
  std::string failure;
  for (auto &w : works) {
    try {
      w->wait(timeout);
    } catch (const std::exception &e) {
      if (failure.empty()) failure = e.what();
    }
  }
  if (!failure.empty()) {
    throw std::runtime_error(std::string(what) + " failed (a peer rank may have exited or stopped answering): " + failure);
  }
}

} // namespace

extern "C" {

const char *ct_distributed_backends(void) {
#if defined(USE_C10D_GLOO) && defined(USE_C10D_NCCL)
  return "gloo,nccl";
#elif defined(USE_C10D_GLOO)
  return "gloo";
#elif defined(USE_C10D_NCCL)
  return "nccl";
#else
  return "";
#endif
}

ct_process_group ct_process_group_new(const char *backend, const char *host, int port, int rank, int world_size,
                                      int64_t timeout_ms) {
  return ct_internal_guard<ct_process_group>(nullptr, [&]() -> ct_process_group {
    if (world_size < 1 || rank < 0 || rank >= world_size) {
      throw std::invalid_argument("rank " + std::to_string(rank) + " is outside a world of " + std::to_string(world_size));
    }
    if (port < 1 || port > 65535) throw std::invalid_argument("port " + std::to_string(port) + " is not a TCP port");
    std::string name(backend), address(host);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = rank == 0;
    options.numWorkers = world_size;
    options.waitWorkers = true;
    options.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(address, options);
    auto store = c10::make_intrusive<c10d::PrefixStore>("shatter/" + name, tcp);
    auto pg = std::make_unique<ct_process_group_s>();
    pg->store = store;
    pg->timeout = timeout;
    pg->rank = rank;
    if (name == "gloo") {
#ifdef USE_C10D_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      // GLOO_SOCKET_IFNAME picks the interface as in PyTorch; a loopback master means one machine.
      const char *interface = std::getenv("GLOO_SOCKET_IFNAME");
      if (interface && *interface) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (is_loopback(address)) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      pg->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, opts);
#else
      throw std::invalid_argument("this build of Shatter has no Gloo backend (built without the gloo headers)");
#endif
    } else if (name == "nccl") {
#ifdef USE_C10D_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      pg->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, opts);
#else
      throw std::invalid_argument("this build of Shatter has no NCCL backend (it needs a CUDA libtorch and USE_C10D_NCCL)");
#endif
    } else {
      throw std::invalid_argument("unknown backend '" + name + "' (expected gloo or nccl)");
    }
    return pg.release();
  });
}

void ct_process_group_free(ct_process_group pg) { delete pg; }

int ct_all_reduce_sum(ct_process_group pg, ct_tensor *tensors, int count) {
  return ct_internal_guard<int>(-1, [&] {
    auto all = unwrap(tensors, count);
    pg->each([&](auto &group) {
      std::vector<decltype(group.barrier())> works;
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      for (auto &t : all) {
        std::vector<at::Tensor> one{t};
        works.push_back(group.allreduce(one, options));
      }
      wait_all(works, pg->timeout, "all-reduce");
    });
    return 0;
  });
}

int ct_broadcast(ct_process_group pg, ct_tensor *tensors, int count, int root) {
  return ct_internal_guard<int>(-1, [&] {
    auto all = unwrap(tensors, count);
    pg->each([&](auto &group) {
      std::vector<decltype(group.barrier())> works;
      c10d::BroadcastOptions options;
      options.rootRank = root;
      for (auto &t : all) {
        std::vector<at::Tensor> one{t};
        works.push_back(group.broadcast(one, options));
      }
      wait_all(works, pg->timeout, "broadcast");
    });
    return 0;
  });
}

int ct_barrier(ct_process_group pg) {
  return ct_internal_guard<int>(-1, [&] {
    pg->each([&](auto &group) {
      std::vector<decltype(group.barrier())> works{group.barrier()};
      wait_all(works, pg->timeout, "barrier");
    });
    return 0;
  });
}

} // extern "C"
