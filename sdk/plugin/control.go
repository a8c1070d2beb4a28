package plugin

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loopkernel/loopkernel/sdk"
	pb "github.com/loopkernel/loopkernel/sdk/proto"
)

// grpcPlugin is the go-plugin adapter: the server half registers the control
// service, the client half hands back a stub for it.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	server *controlServer // nil on the host side
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterControlServer(s, p.server)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return pb.NewControlClient(c), nil
}

// controlServer answers the control plane inside the plugin process.
type controlServer struct {
	pb.UnimplementedControlServer
	name    string
	sel     *countingSelector
	logger  hclog.Logger
	started time.Time

	shutdownOnce sync.Once
	shutdown     chan time.Time // the deadline of a requested shutdown
	stopped      chan struct{}  // closed once the selector is closed

	mu    sync.Mutex
	dpErr error // why the data plane stopped; nil while it runs
	dpEnd bool
}

func newControlServer(name string, sel *countingSelector, logger hclog.Logger) *controlServer {
	return &controlServer{
		name:     name,
		sel:      sel,
		logger:   logger,
		started:  time.Now(),
		shutdown: make(chan time.Time, 1),
		stopped:  make(chan struct{}),
	}
}

func (c *controlServer) setDataPlaneErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dpEnd {
		c.dpEnd, c.dpErr = true, err
	}
}

func (c *controlServer) Handshake(_ context.Context, req *pb.HandshakeRequest) (*pb.HandshakeResponse, error) {
	resp := &pb.HandshakeResponse{
		ControlVersion:   controlVersion,
		DataplaneVersion: dataplaneVersion,
		PluginName:       c.name,
		Pid:              int64(os.Getpid()),
	}
	switch {
	case req.ControlVersion != controlVersion || req.DataplaneVersion != dataplaneVersion:
		return resp, status.Errorf(codes.FailedPrecondition,
			"plugin %q speaks control v%d / data plane v%d, host asked for v%d / v%d",
			c.name, controlVersion, dataplaneVersion, req.ControlVersion, req.DataplaneVersion)
	case req.PluginName != "" && req.PluginName != c.name:
		return resp, status.Errorf(codes.FailedPrecondition,
			"host launched plugin %q but this binary serves %q", req.PluginName, c.name)
	}
	return resp, nil
}

func (c *controlServer) Capabilities(context.Context, *pb.CapabilitiesRequest) (*pb.CapabilitiesResponse, error) {
	caps := c.sel.Capabilities()
	return &pb.CapabilitiesResponse{
		Name:         caps.Name,
		MaxFds:       int64(caps.MaxFDs),
		RegularFiles: caps.RegularFiles,
		Build:        buildInfo(),
	}, nil
}

func buildInfo() *pb.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return &pb.BuildInfo{}
	}
	out := &pb.BuildInfo{GoVersion: bi.GoVersion, MainPath: bi.Main.Path, MainVersion: bi.Main.Version}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.VcsRevision = s.Value
		case "vcs.modified":
			out.VcsModified = s.Value == "true"
		}
	}
	const module = "github.com/loopkernel/loopkernel"
	if bi.Main.Path == module {
		out.SdkVersion = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			out.SdkVersion = d.Version
		}
	}
	return out
}

func (c *controlServer) Configure(_ context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	for k, v := range req.Settings {
		if k == "log_level" {
			lvl := hclog.LevelFromString(v)
			if lvl == hclog.NoLevel {
				return nil, status.Errorf(codes.InvalidArgument, "log_level %q: want trace, debug, info, warn, error or off", v)
			}
			c.logger.SetLevel(lvl)
			continue
		}
		cf, ok := c.sel.Selector.(Configurer)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "plugin %q has no setting %q", c.name, k)
		}
		if err := cf.Configure(k, v); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "plugin %q: setting %s=%q: %v", c.name, k, v, err)
		}
	}
	return &pb.ConfigureResponse{}, nil
}

func (c *controlServer) Health(context.Context, *pb.HealthRequest) (*pb.HealthResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &pb.HealthResponse{Serving: !c.dpEnd, UptimeNs: int64(time.Since(c.started))}
	if c.dpEnd {
		resp.DataplaneError = fmt.Sprint(c.dpErr)
	}
	return resp, nil
}

func (c *controlServer) Stats(context.Context, *pb.StatsRequest) (*pb.StatsResponse, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return nil, status.Errorf(codes.Internal, "getrusage: %v", err)
	}
	return &pb.StatsResponse{
		Waits:         c.sel.waits.Load(),
		Events:        c.sel.events.Load(),
		Registrations: c.sel.live.Load(),
		Registers:     c.sel.registers.Load(),
		Modifies:      c.sel.modifies.Load(),
		Unregisters:   c.sel.unregisters.Load(),
		CpuUserNs:     ru.Utime.Nano(),
		CpuSysNs:      ru.Stime.Nano(),
		MaxRssKb:      ru.Maxrss,
	}, nil
}

// Shutdown hands the deadline to Serve's main goroutine and waits until the
// selector is closed (or the deadline passes), so a host that gets the reply
// knows the plugin has let go of everything but its process.
func (c *controlServer) Shutdown(ctx context.Context, req *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	deadline := time.Unix(0, req.DeadlineUnixNs)
	if req.DeadlineUnixNs == 0 {
		deadline = time.Now().Add(time.Second)
	}
	c.shutdownOnce.Do(func() { c.shutdown <- deadline })
	select {
	case <-c.stopped:
		return &pb.ShutdownResponse{}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-time.After(time.Until(deadline)):
		return nil, status.Errorf(codes.DeadlineExceeded, "plugin %q did not stop by its deadline", c.name)
	}
}

// countingSelector counts what the control plane's Stats reports. Atomic
// adds only: nothing here allocates, so it can sit on the data-plane path.
// The data plane registers its own socket in the selector (so a wake frame
// ends a wait); that registration is the SDK's, not the host's, and is not
// counted.
type countingSelector struct {
	sdk.Selector
	ownFD                                           int
	ownTok                                          atomic.Uint64
	ownSet                                          atomic.Bool
	waits, events, registers, modifies, unregisters atomic.Uint64
	live                                            atomic.Int64
}

func (s *countingSelector) own(tok sdk.Token) bool {
	return s.ownSet.Load() && sdk.Token(s.ownTok.Load()) == tok
}

func (s *countingSelector) Register(fd int, tok sdk.Token, interest sdk.Events) error {
	err := s.Selector.Register(fd, tok, interest)
	if err == nil && fd == s.ownFD && !s.ownSet.Load() {
		s.ownTok.Store(uint64(tok))
		s.ownSet.Store(true)
		return nil
	}
	if err == nil {
		s.registers.Add(1)
		s.live.Add(1)
	}
	return err
}

func (s *countingSelector) Modify(tok sdk.Token, interest sdk.Events) error {
	err := s.Selector.Modify(tok, interest)
	if err == nil && !s.own(tok) {
		s.modifies.Add(1)
	}
	return err
}

func (s *countingSelector) Unregister(tok sdk.Token) error {
	err := s.Selector.Unregister(tok)
	if err == nil && s.own(tok) {
		s.ownSet.Store(false)
		return nil
	}
	if err == nil {
		s.unregisters.Add(1)
		s.live.Add(-1)
	}
	return err
}

func (s *countingSelector) Wait(events []sdk.Event, timeout time.Duration) (int, error) {
	n, err := s.Selector.Wait(events, timeout)
	s.waits.Add(1)
	s.events.Add(uint64(n))
	return n, err
}
