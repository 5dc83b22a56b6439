//! Placement: which node a new pipeline goes to, from the live nodes' records.

use crate::{NodeId, NodeRecord};

/// The node a new pipeline goes to, among `nodes` (live records, as
/// [`crate::Coordinator::nodes`] gives them; nothing here reads a clock):
///
/// - with `pin`: that node if it is in `nodes` and not draining, else `None` (a pinned
///   pipeline is not moved elsewhere silently);
/// - else the serving node (not draining, with spare capacity) with the most spare
///   capacity ([`NodeRecord::spare`]); on a tie the lower CPU use, then the smaller id.
///   `None` when no node serves.
pub fn place(nodes: &[NodeRecord], pin: Option<&str>) -> Option<NodeId> {
    let mut serving = nodes.iter().filter(|n| !n.stats.draining);
    if let Some(pin) = pin {
        return serving
            .find(|n| n.info.id.as_str() == pin)
            .map(|n| n.info.id.clone());
    }
    serving
        .filter(|n| n.spare() > 0)
        .max_by(|a, b| {
            a.spare()
                .cmp(&b.spare())
                .then_with(|| b.stats.cpu_percent.total_cmp(&a.stats.cpu_percent))
                .then_with(|| b.info.id.cmp(&a.info.id))
        })
        .map(|n| n.info.id.clone())
}

#[cfg(test)]
mod tests {
    use super::place;
    use crate::{NodeId, NodeInfo, NodeRecord, NodeStats};

    /// A node `id` with `capacity`, `endpoints`, `cpu` and `draining`.
    fn node(id: &str, capacity: u64, endpoints: u64, cpu: f64, draining: bool) -> NodeRecord {
        NodeRecord {
            boot: 1,
            info: NodeInfo {
                id: NodeId::new(id).unwrap(),
                signalling: format!("ws://{id}:8888/kurento"),
                peer: format!("{id}:8888"),
                capacity,
            },
            stats: NodeStats {
                cpu_percent: cpu,
                egress_pps: 0,
                endpoints,
                draining,
            },
        }
    }

    fn placed(nodes: &[NodeRecord], pin: Option<&str>) -> Option<String> {
        place(nodes, pin).map(String::from)
    }

    #[test]
    fn the_node_with_the_most_spare_capacity_wins() {
        let table: &[(&[NodeRecord], Option<&str>)] = &[
            (&[], None),
            (&[node("a", 100, 10, 5.0, false)], Some("a")),
            // 90 spare against 150 spare: capacity counts, not the endpoints alone.
            (
                &[
                    node("a", 100, 10, 5.0, false),
                    node("b", 200, 50, 80.0, false),
                ],
                Some("b"),
            ),
            // A draining node gets nothing, however empty.
            (
                &[
                    node("a", 100, 90, 5.0, false),
                    node("b", 1000, 0, 0.0, true),
                ],
                Some("a"),
            ),
            // Full nodes serve nothing.
            (
                &[
                    node("a", 100, 100, 5.0, false),
                    node("b", 10, 12, 0.0, false),
                ],
                None,
            ),
            (&[node("a", 100, 0, 0.0, true)], None),
        ];
        for (i, (nodes, want)) in table.iter().enumerate() {
            assert_eq!(placed(nodes, None).as_deref(), *want, "row {i}: {nodes:?}");
        }
    }

    #[test]
    fn ties_go_to_the_lower_cpu_then_the_smaller_id_whatever_the_order() {
        let same = [
            node("c", 100, 10, 30.0, false),
            node("b", 100, 10, 20.0, false),
            node("a", 100, 10, 20.0, false),
        ];
        let mut rev = same.clone();
        rev.reverse();
        assert_eq!(placed(&same, None).as_deref(), Some("a"));
        assert_eq!(placed(&rev, None).as_deref(), Some("a"));
        let cpu = [
            node("a", 100, 10, 70.0, false),
            node("b", 100, 10, 20.0, false),
        ];
        assert_eq!(placed(&cpu, None).as_deref(), Some("b"));
    }

    #[test]
    fn a_pinned_node_is_taken_if_live_and_not_draining() {
        let nodes = [
            node("a", 100, 99, 90.0, false),
            node("b", 100, 0, 0.0, false),
            node("c", 100, 0, 0.0, true),
        ];
        let table = [
            // Pinned: taken even when another has more room (and when it is nearly full).
            ("a", Some("a")),
            ("b", Some("b")),
            // Draining, or not live (not in the list): not placed elsewhere.
            ("c", None),
            ("z", None),
        ];
        for (pin, want) in table {
            assert_eq!(placed(&nodes, Some(pin)).as_deref(), want, "pin {pin}");
        }
    }
}
