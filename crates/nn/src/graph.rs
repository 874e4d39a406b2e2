//! Layers in topological (Keras) order, each reading the outputs of earlier nodes: a sequential model
//! when every node reads the one before, a residual network when an `Add` reads two.
//!
//! Forward keeps a node's output only until its last reader has run; layers record what backward needs
//! only from the lowest trainable node up, so a frozen base costs a forward pass and nothing more.

use crate::fusion::{self, Fusion};
use crate::{Ctx, Error, Layer, Mode, Param, Result, Tensor};
use std::collections::HashMap;
use std::ops::Range;

pub type NodeId = usize;

/// The graph's input, as a node id that `add` accepts.
pub const INPUT: NodeId = usize::MAX;

struct Node {
    layer: Box<dyn Layer>,
    inputs: Vec<NodeId>,
}

#[derive(Default)]
pub struct Graph {
    nodes: Vec<Node>,
    /// Nodes the last forward over them fused into a neighbour: they passed their input through, and
    /// their backward passes the gradient through (the neighbour accounts for them).
    passthrough: Vec<bool>,
}

/// What a forward pass returns: the last node's output and the captured ones.
pub struct Outputs {
    pub last: Tensor,
    pub captured: HashMap<NodeId, Tensor>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer that reads the previous node (or the graph input, for the first).
    pub fn push(&mut self, layer: impl Layer + 'static) -> NodeId {
        let prev = self.nodes.len().checked_sub(1).unwrap_or(INPUT);
        self.add(layer, &[prev])
    }

    /// Appends a layer reading the given nodes. Panics on a forward reference: graphs are built by code.
    pub fn add(&mut self, layer: impl Layer + 'static, inputs: &[NodeId]) -> NodeId {
        let id = self.nodes.len();
        assert!(
            inputs.iter().all(|&i| i == INPUT || i < id),
            "graph inputs must come before the node"
        );
        self.nodes.push(Node {
            layer: Box::new(layer),
            inputs: inputs.to_vec(),
        });
        id
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    pub fn layer(&self, id: NodeId) -> &dyn Layer {
        self.nodes[id].layer.as_ref()
    }
    pub fn layer_mut(&mut self, id: NodeId) -> &mut dyn Layer {
        self.nodes[id].layer.as_mut()
    }
    pub fn inputs(&self, id: NodeId) -> &[NodeId] {
        &self.nodes[id].inputs
    }
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.layer.name() == name)
    }
    pub fn names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.layer.name().to_string())
            .collect()
    }

    /// Visits every variable of every layer, in order.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        for n in &mut self.nodes {
            n.layer.visit_params(f);
        }
    }

    pub fn zero_grad(&mut self) {
        self.visit_params(&mut |p| p.zero_grad());
    }

    /// Sets the trainable flag of every weight (not moving statistics) of the given nodes.
    pub fn set_trainable(&mut self, nodes: Range<NodeId>, trainable: bool) {
        for n in &mut self.nodes[nodes] {
            n.layer.visit_params(&mut |p| {
                if !p.is_state {
                    p.trainable = trainable;
                }
            });
        }
    }

    /// The lowest node with a trainable parameter: backward never goes below it.
    pub fn first_trainable(&mut self) -> Option<NodeId> {
        (0..self.nodes.len()).find(|&i| {
            let mut t = false;
            self.nodes[i].layer.visit_params(&mut |p| t |= p.trainable);
            t
        })
    }

    /// Forward through all nodes.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(self
            .run(&[(INPUT, x)], 0..self.nodes.len(), mode, &[])?
            .last)
    }

    /// Forward through nodes `range`, reading `feeds` (outputs of nodes before the range, or `INPUT`),
    /// returning the last node's output and copies of the `capture`d ones.
    ///
    /// A node with nothing of its own to compute may be fused into its neighbour for this run, as
    /// [`fusion::rule`] pairs them and the neighbour can (a `ReLU` into the batch-norm before it, a
    /// `ZeroPadding2D` into the depthwise convolution after it; batch-norms are never folded here).
    /// The fused node then passes its input through, forward and backward.
    /// Only a node whose output goes to that neighbour alone, and is not captured, is fused.
    pub fn run(
        &mut self,
        feeds: &[(NodeId, &Tensor)],
        range: Range<NodeId>,
        mode: Mode,
        capture: &[NodeId],
    ) -> Result<Outputs> {
        if range.is_empty() || range.end > self.nodes.len() {
            return Err(Error::Invalid(format!(
                "node range {range:?} outside a graph of {}",
                self.nodes.len()
            )));
        }
        let first_train = if mode == Mode::Train {
            self.first_trainable()
        } else {
            None
        };
        let last_use: HashMap<NodeId, NodeId> =
            last_uses(range.clone().map(|i| (i, self.nodes[i].inputs.as_slice())));
        self.passthrough.resize(self.nodes.len(), false);
        self.passthrough[range.clone()].fill(false);
        let mut owned: HashMap<NodeId, Tensor> = HashMap::new();
        let mut captured = HashMap::new();
        let mut last = None;
        for i in range.clone() {
            let ctx = Ctx {
                mode,
                record: first_train.is_some_and(|f| i >= f),
            };
            self.fuse_with_next(i, &range, capture);
            let node = &mut self.nodes[i];
            let mut ins = Vec::with_capacity(node.inputs.len());
            for &j in &node.inputs {
                let t = owned
                    .get(&j)
                    .or_else(|| feeds.iter().find(|(k, _)| *k == j).map(|(_, t)| *t));
                ins.push(t.ok_or_else(|| {
                    Error::layer(
                        node.layer.name(),
                        format!("input node {j} was neither computed nor fed"),
                    )
                })?);
            }
            let t = crate::profile::start();
            let y = if self.passthrough[i] {
                ins[0].clone()
            } else {
                let y = node.layer.forward(&ins, ctx);
                // Whatever this node took over from a neighbour was for this forward only.
                node.layer.fuse(None);
                y?
            };
            crate::profile::record(t, node.layer.name(), crate::profile::Phase::Forward);
            if capture.contains(&i) {
                captured.insert(i, y.clone());
            }
            let inputs = node.inputs.clone();
            for j in inputs {
                if last_use.get(&j) == Some(&i) {
                    owned.remove(&j);
                }
            }
            if i + 1 == range.end {
                last = Some(y);
            } else if last_use.contains_key(&i) {
                owned.insert(i, y);
            }
        }
        Ok(Outputs {
            last: last.expect("range is not empty"),
            captured,
        })
    }

    /// The nodes the last forward over them fused into a neighbour (they passed their input through).
    pub fn fused_nodes(&self) -> Vec<NodeId> {
        (0..self.passthrough.len())
            .filter(|&i| self.passthrough[i])
            .collect()
    }

    /// How many nodes read node `id`'s output.
    pub fn readers(&self, id: NodeId) -> usize {
        self.nodes[id.saturating_add(1).min(self.nodes.len())..]
            .iter()
            .filter(|n| n.inputs.contains(&id))
            .count()
    }

    /// How node `cur` and the node after it are computed as one, if they are: the next node is
    /// before `end`, reads `cur` alone and is its only reader, `cur`'s output is not in `keep`
    /// (wanted on its own), and [`fusion::rule`] pairs their layers. `fold_batch_norm` as there.
    pub fn fusion_at(
        &self,
        cur: NodeId,
        end: NodeId,
        keep: &[NodeId],
        fold_batch_norm: bool,
    ) -> Option<Fusion> {
        let next = cur + 1;
        if next >= end.min(self.nodes.len())
            || self.nodes[next].inputs != [cur]
            || self.readers(cur) != 1
            || keep.contains(&cur)
        {
            return None;
        }
        fusion::rule(
            &self.nodes[cur].layer.describe(),
            &self.nodes[next].layer.describe(),
            fold_batch_norm,
        )
    }

    /// Before node `i` runs: fuses the pair `(i, i + 1)` when [`fusion_at`](Self::fusion_at) pairs
    /// them (a padding into the convolution after it, an activation into the layer before it) and
    /// the layer taking the work over can do it. Marks the other node pass-through.
    fn fuse_with_next(&mut self, i: NodeId, range: &Range<NodeId>, capture: &[NodeId]) {
        if self.passthrough[i] {
            return;
        }
        let (into, fused, f) = match self.fusion_at(i, range.end, capture, false) {
            Some(f @ Fusion::Padding(_)) => (i + 1, i, f),
            Some(f @ Fusion::Activation(_)) => (i, i + 1, f),
            _ => return,
        };
        if self.nodes[into].layer.fuse(Some(f)) {
            self.passthrough[fused] = true;
        }
    }

    /// Backward from `dy` (the gradient of node `range.end - 1`'s output) down to the lowest trainable
    /// node; parameter gradients are added into each `Param::grad`. Returns nothing: input gradients
    /// below the trainable part are never computed.
    pub fn backward(&mut self, dy: Tensor, range: Range<NodeId>) -> Result<()> {
        let Some(first) = self.first_trainable() else {
            return Ok(());
        };
        let mut grads: HashMap<NodeId, Tensor> = HashMap::new();
        grads.insert(range.end - 1, dy);
        for i in (range.start.max(first)..range.end).rev() {
            let Some(g) = grads.remove(&i) else { continue };
            let node = &mut self.nodes[i];
            let need_dx = node
                .inputs
                .iter()
                .any(|&j| j != INPUT && j >= first && j >= range.start);
            let t = crate::profile::start();
            let dxs = if self.passthrough.get(i).copied().unwrap_or(false) {
                // Fused into a neighbour, which takes this node's gradient into account: the
                // gradient goes to its one input unchanged.
                vec![Some(g)]
            } else {
                node.layer.backward(&g, need_dx)?
            };
            crate::profile::record(t, node.layer.name(), crate::profile::Phase::Backward);
            for (&j, dx) in node.inputs.iter().zip(dxs) {
                let Some(dx) = dx else { continue };
                if j == INPUT || j < first || j < range.start {
                    continue;
                }
                match grads.get_mut(&j) {
                    Some(acc) => *acc += &dx,
                    None => {
                        grads.insert(j, dx);
                    }
                }
            }
        }
        Ok(())
    }
}

/// For each value read by the given `(step, inputs)` pairs (in execution order), the last step that
/// reads it: after that step the value can be dropped.
pub fn last_uses<'a, S: Copy>(
    steps: impl Iterator<Item = (S, &'a [NodeId])>,
) -> HashMap<NodeId, S> {
    let mut last = HashMap::new();
    for (s, ins) in steps {
        for &j in ins {
            last.insert(j, s);
        }
    }
    last
}
