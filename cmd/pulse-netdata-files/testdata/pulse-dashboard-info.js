// Pulse: names the dashboard's "pulse" menu (written by pulse-netdata-files).
customDashboard.menu = customDashboard.menu || {};
customDashboard.menu["pulse"] = {
    title: "Pulse functions",
    icon: '<i class="fas fa-bolt"></i>',
    info: "Every Pulse function, one section per function: requests and errors answered by its replicas, latency, requests in flight, replicas, the gateway's view of its demand, and <b>utilization</b>, 100 &times; demand / (ready replicas &times; target), which the <code>pulse_scale_up</code> and <code>pulse_scale_down</code> alarms watch to resize the function."
};
customDashboard.context = customDashboard.context || {};
customDashboard.context["pulse.utilization"] = {
    info: "Demand as a percentage of what the ready replicas are meant to carry (the chart variables <code>replicas</code> and <code>target</code>). Above 100 % for 3 s Pulse adds replicas; under 50 % for 30 s it removes up to half."
};
customDashboard.context["pulse.latency"] = {
    info: "Measured inside the replica by its watchdog, from receiving the request to having written the response: a client also waits for the network, the gateway (HAProxy) and any queue there, so it sees more."
};
customDashboard.context["pulse.inflight"] = {
    info: "Requests being answered, summed over the replicas: each replica's average since its previous scrape (busy seconds per second), so a fast function under light load shows a fraction of a request."
};
