#include "wooly/server/server.h"

#include <arpa/inet.h>
#include <cuda.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <system_error>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpc_services.h"
#include "grpcpp/grpcpp.h"
#include "spdlog/spdlog.h"
#include "wooly/proto/channel.h"
#include "wooly/proto/socket.h"
#include "wooly/server/cu_status.h"
#include "wooly/server/node_memory.h"

#ifndef WOOLY_VERSION
#define WOOLY_VERSION "0.0.0-dev"
#endif

namespace wooly::server {

const char kServerVersion[] = WOOLY_VERSION;

namespace {

// How long a channel must stay empty before woolyd treats the client as
// paused (server.cc's session loop).
constexpr std::chrono::microseconds kIdleGrace{20};

// True when input arrives on `chan` within `grace` (spinning: the wait is
// far shorter than a sleep and wake-up would be).
bool InputWithin(const wire::ByteChannel& chan, std::chrono::microseconds grace) {
  if (chan.InputReady()) return true;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (unsigned i = 1;; ++i) {
    if (chan.InputReady()) return true;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
    if ((i & 15) == 0 && std::chrono::steady_clock::now() >= deadline) return chan.InputReady();
  }
}

// wire::ParseEndpoint refuses port 0 (a client cannot connect to it); a
// listener may ask for it to get an ephemeral port.
bool ParseListenEndpoint(const std::string& text, wire::Endpoint* ep, std::string* error) {
  if (wire::ParseEndpoint(text, ep, error)) return true;
  if (absl::EndsWith(text, ":0") && text.size() > 2) {
    std::string probe = text.substr(0, text.size() - 1) + "1";
    std::string ignored;
    if (wire::ParseEndpoint(probe, ep, &ignored) && !ep->is_unix) {
      ep->port = 0;
      return true;
    }
  }
  return false;
}

// Creates `dir` and any missing parents with `mode`.
absl::Status EnsureDirectory(const std::string& dir, uint32_t mode) {
  if (dir.empty()) return absl::OkStatus();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
    }
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
      spdlog::warn("socket directory {} is writable by everyone", dir);
    }
    return absl::OkStatus();
  }
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    if (absl::Status s = EnsureDirectory(dir.substr(0, slash), mode); !s.ok()) return s;
  }
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create socket directory ", dir, ": ", std::strerror(errno)));
  }
  ::chmod(dir.c_str(), mode);  // mkdir's mode is filtered by the umask
  return absl::OkStatus();
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "";
  return path.substr(0, slash);
}

// Fails when a live server already answers on the unix socket `path`, so a
// second woolyd never steals the socket of a running one; a stale file from
// a dead server is fine (it is replaced).
absl::Status CheckUnixSocketFree(const std::string& path) {
  wire::Endpoint ep;
  ep.is_unix = true;
  ep.path = path;
  std::string error;
  const int fd = wire::Connect(ep, &error);
  if (fd >= 0) {
    ::close(fd);
    return absl::AlreadyExistsError(
        absl::StrCat("another server is already listening on unix:", path));
  }
  return absl::OkStatus();
}

uint64_t InodeOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

std::string PeerOf(int fd, bool is_unix) {
  if (is_unix) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      return absl::StrCat("pid ", cred.pid, " uid ", cred.uid);
    }
    return "unix peer";
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "tcp peer";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
  return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
}

constexpr int kListenBacklog = 128;

// Binds a unix stream socket at `path` under a restrictive umask (so the file
// is never briefly open to all), replacing a stale file, then gives it `mode`.
int BindUnix(const std::string& path, uint32_t mode, std::string* error) {
  sockaddr_un sa{};
  if (path.size() >= sizeof(sa.sun_path)) {
    *error = absl::StrCat("unix socket path too long (", path.size(), " bytes): ", path);
    return -1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = absl::StrCat("socket: ", std::strerror(errno));
    return -1;
  }
  ::unlink(path.c_str());
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  ::umask(old);
  if (rc != 0 || ::chmod(path.c_str(), mode) != 0) {
    *error = absl::StrCat(rc != 0 ? "bind " : "chmod ", path, ": ", std::strerror(errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

int BindTcp(const std::string& host, uint16_t port, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
    *error = absl::StrCat("resolve ", host, ": ", gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    *error = absl::StrCat("bind ", host, ":", port_text, ": ", std::strerror(errno));
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0 && error->empty()) *error = absl::StrCat("no address for ", host);
  return fd;
}

uint16_t BoundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

}  // namespace

std::string FormatGpuUuid(const uint8_t u[16]) {
  return absl::StrFormat("GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                         u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
                         u[12], u[13], u[14], u[15]);
}

absl::StatusOr<BoundSocket> BindSessionSocket(const std::string& endpoint, uint32_t socket_mode,
                                              uint32_t socket_dir_mode) {
  wire::Endpoint ep;
  std::string error;
  if (!ParseListenEndpoint(endpoint, &ep, &error)) return absl::InvalidArgumentError(error);
  BoundSocket bound;
  bound.endpoint = endpoint;
  if (ep.is_unix) {
    if (absl::Status s = EnsureDirectory(ParentDir(ep.path), socket_dir_mode); !s.ok()) return s;
    if (absl::Status s = CheckUnixSocketFree(ep.path); !s.ok()) return s;
    bound.fd = BindUnix(ep.path, socket_mode, &error);
    bound.path = ep.path;
  } else {
    bound.fd = BindTcp(ep.host, ep.port, &error);
  }
  if (bound.fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", endpoint, ": ", error));
  }
  if (!bound.path.empty()) bound.inode = InodeOf(bound.path);
  return bound;
}

void CloseBoundSocket(BoundSocket* socket) {
  if (socket->fd >= 0) ::close(socket->fd);
  socket->fd = -1;
  if (!socket->path.empty() && InodeOf(socket->path) == socket->inode) {
    ::unlink(socket->path.c_str());
  }
  socket->path.clear();
}

Server::Server(ServerOptions options, std::unique_ptr<GpuBackend> backend)
    : options_(std::move(options)), backend_(std::move(backend)) {}

Server::~Server() {
  Shutdown();
  for (int& fd : wake_pipe_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options,
                                                      std::unique_ptr<GpuBackend> backend) {
  if (backend == nullptr) return absl::InvalidArgumentError("no GPU backend");
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<Server> server(new Server(std::move(options), std::move(backend)));
  if (absl::Status s = server->Init(); !s.ok()) {
    server->Shutdown();
    return s;
  }
  return server;
}

absl::Status Server::Init() {
  if (absl::Status s = backend_->BindThread(); !s.ok()) return s;
  absl::StatusOr<wire::DeviceInfo> info = backend_->GetDeviceInfo();
  if (!info.ok()) return info.status();
  // Clients answer cuDeviceGetAttribute locally from this table, indexed by
  // attribute: it must cover every attribute this build knows.
  if (info->attributes.size() < CU_DEVICE_ATTRIBUTE_MAX) {
    spdlog::warn("backend reported {} device attributes, expected {}; the rest read as 0",
                 info->attributes.size(), static_cast<int>(CU_DEVICE_ATTRIBUTE_MAX));
    info->attributes.resize(CU_DEVICE_ATTRIBUTE_MAX, 0);
  }
  context_ = std::make_unique<SharedContext>(
      backend_.get(), [this](CUresult fault) { OnContextUnrecoverable(fault); });
  env_.backend = backend_.get();
  env_.context = context_.get();
  env_.device = std::move(*info);
  env_.server_version = kServerVersion;
  env_.next_id = &next_handle_id_;
  env_.clock = options_.clock ? options_.clock : [] { return absl::Now(); };
  env_.fill_module_cache_in_background = options_.fill_module_cache_in_background;
  env_.launch_pipeline = options_.launch_pipeline;
  if (options_.module_cache_bytes > 0) {
    env_.module_cache =
        std::make_shared<ModuleCache>(options_.module_cache_dir, options_.module_cache_bytes);
    const ModuleCache::Stats st = env_.module_cache->GetStats();
    spdlog::info("module cache: {} ({} images, {} MiB of {} MiB)",
                 options_.module_cache_dir.empty() ? "in memory" : options_.module_cache_dir,
                 st.entries, st.bytes >> 20, options_.module_cache_bytes >> 20);
  }
  started_at_ = env_.clock();
  env_.tenants = &tenants_;
  // Before any listener starts, so that no client joins without them.
  tenants_.SetDefaults(options_.tenant_defaults);
  tenants_.SetDeviceMemory(env_.device.total_mem);
  if (options_.overcommit) tenants_.SetOvercommitCeiling(options_.overcommit_percent);
  if (!options_.policy_file.empty()) {
    absl::StatusOr<ServerPolicyFile> file = ServerPolicyFile::Load(options_.policy_file);
    if (!file.ok()) return file.status();
    spdlog::info("policy file {}: {} rules", options_.policy_file, file->rules());
    tenants_.SetServerPolicyFile(std::move(*file));
  }
  if (options_.scheduler) {
    ShareControlOptions so;
    so.tick = options_.scheduler_tick;
    so.partitions = options_.sm_partitions;
    so.placement = options_.sm_placement;
    share_control_ = std::make_unique<ShareControl>(backend_.get(), context_.get(), &tenants_,
                                                    env_.device, so, env_.clock);
    env_.share_control = share_control_.get();
    if (options_.scheduler_thread) share_control_->Start();
  }
  if (!options_.overcommit && options_.memory_capacity_bytes != 0) {
    spdlog::warn("memory capacity {} MiB is ignored: overcommit is off",
                 options_.memory_capacity_bytes >> 20);
  }
  if (options_.overcommit) {
    NodeMemoryOptions no;
    no.overcommit_percent = options_.overcommit_percent;
    no.idle_threshold = options_.swap_idle_threshold;
    no.host_pool_bytes = options_.swap_host_pool_bytes;
    no.wait_for_room = options_.swap_wait_for_room;
    no.swap_in_group_bytes = options_.swap_in_group_bytes;
    no.capacity_bytes = options_.memory_capacity_bytes;
    absl::StatusOr<std::unique_ptr<NodeMemory>> node =
        NodeMemory::Open(backend_.get(), no, env_.clock, context_.get());
    if (!node.ok()) return node.status();
    env_.node_memory = std::move(*node);
  }

  if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  for (const std::string& text : options_.listen) {
    if (absl::Status s = StartListener(text); !s.ok()) return s;
  }
  if (!options_.admin.empty()) {
    if (absl::Status s = StartGrpc(); !s.ok()) return s;
  }
  if (!options_.metrics_address.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> m = MetricsServer::Start(
        options_.metrics_address, [this] { return RenderMetrics(Status(), latency_.Take()); });
    if (!m.ok()) return m.status();
    metrics_ = std::move(*m);
    spdlog::info("metrics on http://{}/metrics", metrics_->address());
  }
  serving_ = true;
  spdlog::info("woolyd {} serving {} ({}, {} MiB) through the {} backend", kServerVersion,
               env_.device.name, FormatGpuUuid(env_.device.uuid), env_.device.total_mem >> 20,
               backend_->Name());
  return absl::OkStatus();
}

absl::Status Server::StartListener(const std::string& text) {
  wire::Endpoint ep;
  std::string error;
  if (!ParseListenEndpoint(text, &ep, &error)) return absl::InvalidArgumentError(error);
  auto listener = std::make_unique<Listener>();
  listener->is_unix = ep.is_unix;
  if (auto it = options_.bound_listeners.find(text); it != options_.bound_listeners.end()) {
    // Bound by someone else (woolyd's supervisor), who keeps its file.
    listener->fd = it->second;
    adopted_fds_.push_back(it->second);
  } else {
    absl::StatusOr<BoundSocket> bound =
        BindSessionSocket(text, options_.socket_mode, options_.socket_dir_mode);
    if (!bound.ok()) return bound.status();
    listener->fd = bound->fd;
    listener->path = bound->path;
    listener->inode = bound->inode;
  }
  // Only now do connections get through: a bound socket refuses them, so
  // nobody takes a server that is still starting (or failing) for a live one.
  // On a shared socket that already listens this only restates the backlog.
  // Non-blocking: another process may take a connection between poll and
  // accept.
  if (::listen(listener->fd, kListenBacklog) != 0 ||
      ::fcntl(listener->fd, F_SETFL, ::fcntl(listener->fd, F_GETFL) | O_NONBLOCK) != 0) {
    const std::string reason = std::strerror(errno);
    if (!listener->path.empty()) {
      ::close(listener->fd);
      if (InodeOf(listener->path) == listener->inode) ::unlink(listener->path.c_str());
    }
    return absl::UnavailableError(absl::StrCat("cannot listen on ", text, ": ", reason));
  }
  if (!ep.is_unix) ep.port = BoundPort(listener->fd);
  listen_addresses_.push_back(wire::FormatEndpoint(ep));
  spdlog::info("listening on {}", listen_addresses_.back());
  Listener* l = listener.get();
  listeners_.push_back(std::move(listener));
  l->thread = std::thread(&Server::AcceptLoop, this, l);
  return absl::OkStatus();
}

absl::Status Server::StartGrpc() {
  wire::Endpoint ep;
  std::string error;
  if (!ParseListenEndpoint(options_.admin, &ep, &error)) return absl::InvalidArgumentError(error);
  std::string address;
  if (ep.is_unix) {
    if (absl::Status s = EnsureDirectory(ParentDir(ep.path), options_.socket_dir_mode); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckUnixSocketFree(ep.path); !s.ok()) return s;
    ::unlink(ep.path.c_str());
    address = "unix:" + ep.path;
  } else {
    address = ep.host.find(':') != std::string::npos ? absl::StrCat("[", ep.host, "]:", ep.port)
                                                     : absl::StrCat(ep.host, ":", ep.port);
  }
  admin_service_ = std::make_unique<internal::AdminService>(this);
  session_service_ = std::make_unique<internal::SessionService>(this);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(admin_service_.get());
  builder.RegisterService(session_service_.get());
  const int max_message = static_cast<int>(wire::kMaxPayload + (64 << 10));
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || (!ep.is_unix && port == 0)) {
    grpc_server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot serve gRPC on ", options_.admin));
  }
  if (ep.is_unix) {
    // gRPC creates the file with the process umask; the directory (0750)
    // already keeps others out while this tightens the file itself.
    ::chmod(ep.path.c_str(), options_.socket_mode);
    admin_unix_path_ = ep.path;
  } else {
    ep.port = static_cast<uint16_t>(port);
  }
  admin_address_ = wire::FormatEndpoint(ep);
  spdlog::info("admin and session gRPC services on {}", admin_address_);
  return absl::OkStatus();
}

void Server::WakeAcceptLoops() {
  const char byte = 1;
  // Never drained: the pipe stays readable, so every loop sees it.
  ssize_t ignored = ::write(wake_pipe_[1], &byte, 1);
  (void)ignored;
}

void Server::OnContextUnrecoverable(CUresult fault) {
  if (context_unrecoverable_.exchange(true)) return;
  // Connections not yet accepted stay queued: on a listener shared with
  // woolyd's supervisor the next worker serves them.
  draining_.store(true);
  WakeAcceptLoops();
  spdlog::error(
      "the shared GPU context is lost ({}) beyond an in-process reset: no longer "
      "accepting connections; this process must exit and be restarted",
      CuResultName(fault));
  if (options_.on_context_unrecoverable) options_.on_context_unrecoverable(fault);
}

void Server::AcceptLoop(Listener* listener) {
  const std::string transport = listener->is_unix ? "unix" : "tcp";
  while (!stopping_.load() && !draining_.load()) {
    pollfd fds[2] = {{listener->fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll on {}: {}; listener stopped", transport, std::strerror(errno));
      break;
    }
    if (fds[1].revents != 0 || stopping_.load() || draining_.load()) break;
    const int fd = ::accept4(listener->fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_.load()) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EWOULDBLOCK) {
        continue;
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        spdlog::error("accept on {}: {}; retrying", transport, std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // back off, not a test wait
        continue;
      }
      spdlog::error("accept on {}: {}; listener stopped", transport, std::strerror(errno));
      break;
    }
    if (stopping_.load() || draining_.load()) {
      ::close(fd);
      break;
    }
    if (!listener->is_unix) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    } else {
      // A client's pipelined copy (Connection::CallPipelined) overlaps the
      // next piece's copy with this reply's transfer only as far as the
      // socket buffers the reply: a unix socket's default (~208 KiB) is far
      // below one 4 MiB piece. Forced where privileged, else capped by
      // net.core.wmem_max; TCP tunes its own.
      int bytes = 4 << 20;
      if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) != 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
      }
    }
    // The session (and its client id) exists from accept on, so ids follow
    // connection order.
    std::shared_ptr<ClientSession> session = OpenSession(transport, PeerOf(fd, listener->is_unix));
    if (listener->is_unix) {
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        session->set_peer_pid_namespace(PidNamespaceOf(cred.pid));
      }
    }
    absl::MutexLock lock(&conn_mu_);
    ReapConnections();
    auto conn = std::make_unique<Connection>();
    conn->fd = fd;
    Connection* c = conn.get();
    connections_.push_back(std::move(conn));
    try {
      c->thread = std::thread(&Server::ServeConnection, this, c, session);
    } catch (const std::system_error& e) {
      spdlog::error("cannot start a client thread: {}", e.what());
      ::close(fd);
      connections_.pop_back();
      EndSession(session, "no thread to serve it");
    }
  }
}

void Server::ReapConnections() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::ServeConnection(Connection* conn, std::shared_ptr<ClientSession> session) {
  const int fd = conn->fd;
  std::string reason = "client closed the connection";
  // Frames come over the socket until the client switches to the
  // shared-memory channel (kShmAttach); the socket then only carries file
  // descriptors and tells when the client is gone.
  const bool is_unix = session->transport() == "unix";
  // TCP carries no descriptors, so its reads may be buffered: a pipeline of
  // small asynchronous commands then costs a system call per batch.
  std::unique_ptr<wire::ByteChannel> chan =
      std::make_unique<wire::SocketChannel>(fd, is_unix ? 0 : 256u << 10);
  // The thread binds to the GPU context lazily, in each command's
  // SharedContext::Access (the context may be replaced after a fault).
  {
    std::vector<uint8_t> buffer;
    for (;;) {
      wire::FrameHeader h;
      if (!chan->Read(&h, sizeof(h))) {
        if (stopping_.load()) reason = "server shutting down";
        break;
      }
      const uint32_t limit = session->hello_done() ? wire::kMaxPayload + 4096 : kMaxPreHelloPayload;
      if (h.magic != wire::kMagic || h.length > limit) {
        reason = absl::StrFormat("malformed frame header (magic %#x, length %u); dropped", h.magic,
                                 h.length);
        spdlog::warn("client {}: {}", session->id(), reason);
        break;
      }
      try {
        buffer.resize(h.length);
      } catch (const std::bad_alloc&) {
        reason = "out of host memory for a frame";
        break;
      }
      if (!chan->Read(buffer.data(), h.length)) {
        reason = "connection lost mid-frame";
        break;
      }
      const auto op = static_cast<wire::Op>(h.op);
      if (op == wire::Op::kShmAttach) {
        // Transport-level: switch this connection to the rings.
        const int memfd = wire::RecvFd(fd);
        std::unique_ptr<wire::ShmChannel> shm;
        std::string error = "not a unix-socket session, or before hello";
        if (memfd >= 0 && is_unix && session->hello_done() &&
            dynamic_cast<wire::SocketChannel*>(chan.get()) != nullptr) {
          shm = wire::ShmChannel::Attach(memfd, fd, &error);
        } else if (memfd >= 0) {
          ::close(memfd);
        }
        const int32_t result = shm ? CUDA_SUCCESS : CUDA_ERROR_NOT_SUPPORTED;
        if (!shm) spdlog::info("client {}: no shared-memory channel: {}", session->id(), error);
        if (!wire::WriteFrame(fd, static_cast<uint16_t>(h.op | wire::kReplyBit), h.seq, &result,
                              sizeof(result))) {
          reason = "connection lost while replying";
          break;
        }
        if (shm) {
          chan = std::move(shm);
          session->set_transport("unix+shm");
          spdlog::info("client {}: switched to the shared-memory channel", session->id());
        }
        continue;
      }
      if (op == wire::Op::kHostShmRegister) {
        // The memfd travels beside the request on the socket.
        session->SetPendingFd(is_unix ? wire::RecvFd(fd) : -1);
      }
      if (op == wire::Op::kLaunchKernel || op == wire::Op::kGraphLaunch) {
        session->Admit(stopping_);  // the scheduler may hold or pace it
      }
      // Only the launch pipeline uses it; on a socket it costs a poll().
      if (op == wire::Op::kLaunchKernel && options_.launch_pipeline) {
        session->SetMoreInput(chan->InputReady());
      }
      const auto started = std::chrono::steady_clock::now();
      ClientSession::Reply r = session->Handle(h, buffer);
      latency_.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      if ((h.flags & wire::kFlagNoReply) == 0 &&
          !wire::WriteFrameTo(*chan, r.op, 0, r.seq, r.payload.data(), r.payload.size())) {
        reason = "connection lost while replying";
        break;
      }
      session->RecycleReply(std::move(r.payload));
      if (r.close) {
        reason = r.op == (static_cast<uint16_t>(wire::Op::kGoodbye) | wire::kReplyBit)
                     ? "goodbye"
                     : "closed by server";
        break;
      }
      // The client paused (waits or computes): its launches so far form a
      // measured batch. A client queueing launches back to back often
      // leaves the channel empty for a moment; closing a batch (an event
      // record in the driver) each time halved launch throughput, so it
      // must stay empty for a short grace first.
      if (session->HasOpenBatch() && !InputWithin(*chan, kIdleGrace)) session->OnIdle();
      // Keep one copy chunk's worth for the next bulk frame, nothing bigger
      // (a large module image) for the rest of the connection.
      if (buffer.capacity() > wire::kCopyChunk + 4096) std::vector<uint8_t>().swap(buffer);
    }
  }
  EndSession(session, reason);
  chan.reset();
  absl::MutexLock lock(&conn_mu_);
  ::close(fd);
  conn->fd = -1;
  conn->done.store(true);
}

std::shared_ptr<ClientSession> Server::OpenSession(const std::string& transport,
                                                   const std::string& peer) {
  const uint64_t id = next_client_id_.fetch_add(1);
  auto session = std::make_shared<ClientSession>(&env_, id, transport, peer);
  absl::MutexLock lock(&sessions_mu_);
  sessions_[id] = session;
  return session;
}

void Server::EndSession(const std::shared_ptr<ClientSession>& session, const std::string& reason) {
  session->Close(reason);
  absl::MutexLock lock(&sessions_mu_);
  sessions_.erase(session->id());
}

void Server::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  stopping_.store(true);
  if (share_control_) share_control_->Stop();
  metrics_.reset();
  if (wake_pipe_[1] >= 0) WakeAcceptLoops();
  for (auto& l : listeners_) {
    if (l->thread.joinable()) l->thread.join();
    ::close(l->fd);
    if (!l->path.empty() && InodeOf(l->path) == l->inode) ::unlink(l->path.c_str());
  }
  listeners_.clear();
  // Descriptors handed over for listeners that never started.
  for (const auto& [text, fd] : options_.bound_listeners) {
    if (std::find(adopted_fds_.begin(), adopted_fds_.end(), fd) == adopted_fds_.end()) {
      ::close(fd);
    }
  }
  if (grpc_server_) {
    // Cancels open Commands streams at once; their handlers release sessions.
    grpc_server_->Shutdown(std::chrono::system_clock::now());
    grpc_server_->Wait();
    grpc_server_.reset();
  }
  if (!admin_unix_path_.empty()) ::unlink(admin_unix_path_.c_str());
  {
    // Stop reading only: a reader waiting for the next command sees the end
    // of its stream, while a command in progress still writes its reply
    // (after a fault, that reply carries the sticky error).
    absl::MutexLock lock(&conn_mu_);
    for (auto& c : connections_) {
      if (!c->done.load() && c->fd >= 0) ::shutdown(c->fd, SHUT_RD);
    }
    auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn_mu_) {
      for (const auto& c : connections_) {
        if (!c->done.load()) return false;
      }
      return true;
    };
    if (!conn_mu_.AwaitWithTimeout(absl::Condition(&all_done), options_.shutdown_grace)) {
      // A client that does not read its reply must not hold up the stop.
      for (auto& c : connections_) {
        if (!c->done.load() && c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
      }
    }
  }
  // No accept loop runs any more, so the list only shrinks from here; join
  // without the lock, which the finishing threads take.
  std::list<std::unique_ptr<Connection>> conns;
  for (;;) {
    {
      absl::MutexLock lock(&conn_mu_);
      conns.splice(conns.end(), connections_);
    }
    if (conns.empty()) break;
    for (auto& c : conns) {
      if (c->thread.joinable()) c->thread.join();
    }
    conns.clear();
  }
  std::map<uint64_t, std::shared_ptr<ClientSession>> left;
  {
    absl::MutexLock lock(&sessions_mu_);
    left.swap(sessions_);
  }
  for (auto& [id, s] : left) s->Close("server shutting down");
  if (serving_) spdlog::info("woolyd stopped");
}

size_t Server::session_count() const {
  absl::MutexLock lock(&sessions_mu_);
  return sessions_.size();
}

bool Server::WaitForSessionCount(size_t count, absl::Duration timeout) const {
  absl::MutexLock lock(&sessions_mu_);
  auto reached = [this, count]()
                     ABSL_SHARED_LOCKS_REQUIRED(sessions_mu_) { return sessions_.size() == count; };
  return sessions_mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

std::vector<ClientStatus> Server::Clients() const {
  std::vector<ClientStatus> out;
  absl::MutexLock lock(&sessions_mu_);
  for (const auto& [id, s] : sessions_) {
    if (s->hello_done() && !s->observer()) out.push_back(s->Snapshot());
  }
  return out;
}

absl::Status Server::SetClientPolicy(uint64_t client_id, const std::string& assignments,
                                     bool reset) {
  absl::StatusOr<ServerPolicyOverride> over = ParseServerAssignments(assignments);
  if (!over.ok()) return over.status();
  if (over->overcommit_percent && env_.node_memory == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(kKeyOvercommitPercent, ": overcommit is off on this server"));
  }
  {
    absl::MutexLock lock(&sessions_mu_);
    auto it = sessions_.find(client_id);
    if (it == sessions_.end() || !it->second->hello_done() || it->second->observer()) {
      return absl::NotFoundError(absl::StrCat("no client ", client_id));
    }
  }
  if (absl::Status s = tenants_.SetRuntimeOverride(client_id, *over, reset); !s.ok()) return s;
  if (env_.node_memory != nullptr && (over->overcommit_percent || reset)) {
    // The resolved override (a reset falls back to the lower layers) goes to
    // the ledger now, so the client's next allocation is admitted with it.
    std::optional<TenantMemberInfo> m = tenants_.Member(client_id);
    if (m) {
      if (absl::Status s = env_.node_memory->SetClientOvercommit(client_id, m->overcommit_percent);
          !s.ok() && !absl::IsNotFound(s)) {
        return s;
      }
    }
  }
  spdlog::info("client {}: policy {}{}", client_id, reset ? "reset, then " : "", assignments);
  return absl::OkStatus();
}

StatusSnapshot Server::Status() {
  StatusSnapshot s;
  s.server_version = kServerVersion;
  s.protocol_version = wire::kProtocolVersion;
  s.gpu_name = env_.device.name;
  s.gpu_uuid = FormatGpuUuid(env_.device.uuid);
  s.total_memory_bytes = env_.device.total_mem;
  absl::StatusOr<MemInfo> mem = absl::UnavailableError("the GPU context is lost");
  {
    // A lost context (awaiting or failing its reset) reports no usage.
    SharedContext::Access access(context_.get(), SharedContext::kUnbound);
    if (access.ok()) {
      mem = backend_->MemGetInfo();
      access.Observe(mem.status(), [] { return std::string("the admin status query"); });
    }
  }
  if (mem.ok()) {
    s.total_memory_bytes = mem->total;
    s.free_memory_bytes = mem->free;
    s.used_memory_bytes = mem->total - std::min(mem->free, mem->total);
  }
  s.backend = backend_->Name();
  s.listen_addresses = listen_addresses_;
  s.admin_address = admin_address_;
  s.uptime_seconds = absl::ToInt64Seconds(env_.clock() - started_at_);
  s.clients = Clients();
  s.context_resets = context_->resets();
  if (env_.node_memory != nullptr) s.memory = env_.node_memory->Status();
  return s;
}

}  // namespace wooly::server
