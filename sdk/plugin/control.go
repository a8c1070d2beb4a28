package plugin

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
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

// grpcPlugin is the go-plugin adapter for one family: the server half
// registers the control service (once, however many families the binary
// serves: there is one service per process), the client half hands back a
// stub bound to its family.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	family string
	server *controlServer // nil on the host side
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	p.server.register.Do(func() { pb.RegisterControlServer(s, p.server) })
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return familyClient{ControlClient: pb.NewControlClient(c), family: p.family}, nil
}

// familyClient is what Dispense hands out: the control stub and the family
// it was dispensed for.
type familyClient struct {
	pb.ControlClient
	family string
}

// pluginSet is go-plugin's plugin map: one entry per family, keyed by the
// family's name. The host's set holds every family; the plugin's, those it
// serves.
func pluginSet(server *controlServer, families []string) goplugin.PluginSet {
	set := goplugin.PluginSet{}
	for _, f := range families {
		set[f] = &grpcPlugin{family: f, server: server}
	}
	return set
}

// hostPlugins is the host's plugin map.
var hostPlugins = pluginSet(nil, []string{sdk.Selectors.Family(), sdk.Resolvers.Family(), sdk.Executors.Family(), sdk.Proactors.Family()})

// controlServer answers the control plane inside the plugin process.
type controlServer struct {
	pb.UnimplementedControlServer
	name     string
	families []string
	be       *served
	logger   hclog.Logger
	started  time.Time
	register sync.Once

	shutdownOnce sync.Once
	shutdown     chan time.Time // the deadline of a requested shutdown
	stopped      chan struct{}  // closed once the back-end is closed

	mu    sync.Mutex
	dpErr error // why the data plane stopped; nil while it runs
	dpEnd bool
}

func newControlServer(name string, families []string, be *served, logger hclog.Logger) *controlServer {
	return &controlServer{
		name:     name,
		families: families,
		be:       be,
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
		Families:         c.families,
	}
	switch {
	case req.ControlVersion != controlVersion || req.DataplaneVersion != dataplaneVersion:
		return resp, status.Errorf(codes.FailedPrecondition,
			"plugin %q speaks control v%d / data plane v%d, host asked for v%d / v%d",
			c.name, controlVersion, dataplaneVersion, req.ControlVersion, req.DataplaneVersion)
	case req.PluginName != "" && req.PluginName != c.name:
		return resp, status.Errorf(codes.FailedPrecondition,
			"host launched plugin %q but this binary serves %q", req.PluginName, c.name)
	case req.Family != c.be.family:
		return resp, status.Errorf(codes.FailedPrecondition,
			"host launched plugin %q as a %s but this process serves a %s", c.name, req.Family, c.be.family)
	}
	return resp, nil
}

func (c *controlServer) Capabilities(context.Context, *pb.CapabilitiesRequest) (*pb.CapabilitiesResponse, error) {
	resp := &pb.CapabilitiesResponse{Name: c.name, Family: c.be.family, Build: buildInfo()}
	switch {
	case c.be.sel != nil:
		caps := c.be.sel.Capabilities()
		resp.Name, resp.MaxFds, resp.RegularFiles = caps.Name, int64(caps.MaxFDs), caps.RegularFiles
	case c.be.family == sdk.Executors.Family():
		resp.Functions = sdk.FuncNames()
	case c.be.pr != nil:
		resp.Name = c.be.pr.Capabilities().Name
	}
	return resp, nil
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
		cf, ok := c.be.backend.(Configurer)
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
	resp := &pb.StatsResponse{
		CpuUserNs: ru.Utime.Nano(),
		CpuSysNs:  ru.Stime.Nano(),
		MaxRssKb:  ru.Maxrss,
	}
	if sel := c.be.sel; sel != nil {
		resp.Waits, resp.Events, resp.Registrations = sel.waits.Load(), sel.events.Load(), sel.live.Load()
		resp.Registers, resp.Modifies, resp.Unregisters = sel.registers.Load(), sel.modifies.Load(), sel.unregisters.Load()
	}
	if calls := c.be.calls; calls != nil {
		resp.Calls, resp.InFlight = calls.done.Load(), calls.inFlight.Load()
	}
	return resp, nil
}

// Shutdown hands the deadline to Serve's main goroutine and waits until the
// back-end is closed (or the deadline passes), so a host that gets the reply
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
