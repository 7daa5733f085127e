// Pulse: names the dashboard's "pulse" menu (written by pulse-netdata-files).
customDashboard.menu = customDashboard.menu || {};
customDashboard.menu["pulse"] = {
    title: "Pulse functions",
    icon: '<i class="fas fa-bolt"></i>',
    info: "Every Pulse function, one section per function: requests and errors answered by its replicas, latency, requests in flight, replicas, the gateway's view of its demand, and <b>utilization</b>, 100 × demand / (ready replicas × target), which the <code>pulse_scale_up</code> and <code>pulse_scale_down</code> alarms watch to resize the function."
};
customDashboard.context = customDashboard.context || {};
customDashboard.context["pulse.utilization"] = {
    info: "Demand as a percentage of what the ready replicas are meant to carry (the chart variables <code>replicas</code> and <code>target</code>). Above 100 % for 3 s Pulse adds replicas; under 50 % for 30 s it removes up to half."
};
