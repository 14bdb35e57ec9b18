// The benchmark peer: a go-control-plane server serving the same resources Envoyage would, from
// the same service records, so that the fan-out and scale benchmarks can run one load client
// against both in the same run. Built at bench time from the Go module proxy.
//
//	-xds-port       ADS (gRPC) port
//	-http-port      control: PUT /registry with {"<name>": {"domains": [...], "endpoints": [...]}}
//	                replaces everything served; GET /healthz
//	-listener-port  the HTTP listener's port in the Listener resource
//	-cache          snapshot (SnapshotCache, one snapshot for every node) or linear (LinearCache
//	                per type, so that a change updates only the resources it touches)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

const routeConfigName = "envoyage_http"

type endpointRecord struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

type serviceRecord struct {
	Domains   []string         `json:"domains"`
	Endpoints []endpointRecord `json:"endpoints"`
}

// fleet hashes every node to one key: one snapshot serves every Envoy.
type fleet struct{}

func (fleet) ID(*core.Node) string { return "fleet" }

func usesEDS(r serviceRecord) bool {
	for _, e := range r.Endpoints {
		if net.ParseIP(e.Address) == nil {
			return false
		}
	}
	return true
}

func loadAssignment(name string, r serviceRecord) *endpoint.ClusterLoadAssignment {
	lbs := make([]*endpoint.LbEndpoint, 0, len(r.Endpoints))
	for _, e := range r.Endpoints {
		lbs = append(lbs, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: e.Address, PortSpecifier: &core.SocketAddress_PortValue{PortValue: e.Port},
			}}},
		}}})
	}
	return &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func clusterFor(name string, r serviceRecord) *cluster.Cluster {
	c := &cluster.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second)}
	if usesEDS(r) {
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
		c.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: &core.ConfigSource{
			ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
			ResourceApiVersion:    core.ApiVersion_V3,
		}}
	} else {
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
		c.DnsLookupFamily = cluster.Cluster_V4_PREFERRED
		c.LoadAssignment = loadAssignment(name, r)
	}
	return c
}

func listenerFor(port uint32) *listener.Listener {
	routerConfig, _ := anypb.New(&router.Router{})
	manager, _ := anypb.New(&hcm.HttpConnectionManager{
		StatPrefix:    routeConfigName,
		CodecType:     hcm.HttpConnectionManager_AUTO,
		StripPortMode: &hcm.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			RouteConfigName: routeConfigName,
			ConfigSource: &core.ConfigSource{
				ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
				ResourceApiVersion:    core.ApiVersion_V3,
			},
		}},
		HttpFilters: []*hcm.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerConfig}}},
	})
	return &listener.Listener{
		Name: routeConfigName,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listener.Filter_TypedConfig{TypedConfig: manager},
		}}}},
	}
}

// resources translates the registry the way Envoyage does: a cluster per service (EDS for IP
// endpoints), its endpoints, one route configuration with a virtual host per service, one listener.
func resources(registry map[string]serviceRecord, listenerPort uint32) map[resource.Type]map[string]types.Resource {
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	out := map[resource.Type]map[string]types.Resource{
		resource.ClusterType: {}, resource.EndpointType: {}, resource.RouteType: {}, resource.ListenerType: {},
	}
	hosts := make([]*route.VirtualHost, 0, len(names))
	for _, name := range names {
		r := registry[name]
		out[resource.ClusterType][name] = clusterFor(name, r)
		if usesEDS(r) {
			out[resource.EndpointType][name] = loadAssignment(name, r)
		}
		hosts = append(hosts, &route.VirtualHost{Name: name, Domains: r.Domains, Routes: []*route.Route{{
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: name}}},
		}}})
	}
	out[resource.RouteType][routeConfigName] = &route.RouteConfiguration{Name: routeConfigName, VirtualHosts: hosts}
	out[resource.ListenerType][routeConfigName] = listenerFor(listenerPort)
	return out
}

// store is what the control endpoint updates: a SnapshotCache or one LinearCache per type.
type store interface {
	cache.Cache
	set(map[resource.Type]map[string]types.Resource) error
}

type snapshotStore struct {
	cache.SnapshotCache
	version atomic.Int64
}

func (s *snapshotStore) set(byType map[resource.Type]map[string]types.Resource) error {
	lists := map[resource.Type][]types.Resource{}
	for t, byName := range byType {
		for _, r := range byName {
			lists[t] = append(lists[t], r)
		}
	}
	snapshot, err := cache.NewSnapshot(strconv.FormatInt(s.version.Add(1), 10), lists)
	if err != nil {
		return err
	}
	return s.SetSnapshot(context.Background(), "fleet", snapshot)
}

type linearStore struct {
	cache.MuxCache
	linear  map[resource.Type]*cache.LinearCache
	current map[resource.Type]map[string]types.Resource
}

func newLinearStore() *linearStore {
	s := &linearStore{linear: map[resource.Type]*cache.LinearCache{}, current: map[resource.Type]map[string]types.Resource{}}
	s.Caches = map[string]cache.Cache{}
	for _, t := range []resource.Type{resource.ClusterType, resource.EndpointType, resource.RouteType, resource.ListenerType} {
		s.linear[t] = cache.NewLinearCache(t)
		s.Caches[t] = s.linear[t]
	}
	s.Classify = func(r *cache.Request) string { return r.GetTypeUrl() }
	s.ClassifyDelta = func(r *cache.DeltaRequest) string { return r.GetTypeUrl() }
	return s
}

// set hands each LinearCache only what changed, as an integration that tracks its resources would.
func (s *linearStore) set(byType map[resource.Type]map[string]types.Resource) error {
	// Clusters and endpoints before the routes and listeners that use them.
	for _, t := range []resource.Type{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
		changed := map[string]types.Resource{}
		var removed []string
		for name, r := range byType[t] {
			if old, ok := s.current[t][name]; !ok || !proto.Equal(old, r) {
				changed[name] = r
			}
		}
		for name := range s.current[t] {
			if _, ok := byType[t][name]; !ok {
				removed = append(removed, name)
			}
		}
		if len(changed) > 0 || len(removed) > 0 {
			if err := s.linear[t].UpdateResources(changed, removed); err != nil {
				return err
			}
		}
		s.current[t] = byType[t]
	}
	return nil
}

func main() {
	xdsPort := flag.Int("xds-port", 18000, "ADS port")
	httpPort := flag.Int("http-port", 18001, "control port")
	listenerPort := flag.Int("listener-port", 10000, "port of the HTTP listener served to Envoy")
	kind := flag.String("cache", "snapshot", "snapshot or linear")
	flag.Parse()

	var s store
	switch *kind {
	case "snapshot":
		s = &snapshotStore{SnapshotCache: cache.NewSnapshotCache(true, fleet{}, nil)}
	case "linear":
		s = newLinearStore()
	default:
		log.Fatalf("-cache must be snapshot or linear, got %q", *kind)
	}
	if err := s.set(resources(map[string]serviceRecord{}, uint32(*listenerPort))); err != nil {
		log.Fatal(err)
	}

	grpcServer := grpc.NewServer(
		grpc.MaxConcurrentStreams(1_000_000),
		grpc.MaxRecvMsgSize(64<<20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, server.NewServer(context.Background(), s, nil))
	xds, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *xdsPort))
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(grpcServer.Serve(xds)) }()

	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	http.HandleFunc("/registry", func(w http.ResponseWriter, r *http.Request) {
		var registry map[string]serviceRecord
		if err := json.NewDecoder(r.Body).Decode(&registry); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.set(resources(registry, uint32(*listenerPort))); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	log.Printf("go-control-plane peer (%s cache): ADS on %d, control on %d", *kind, *xdsPort, *httpPort)
	log.Fatal(http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *httpPort), nil))
}
