//! Learning-rate schedules behind one trait, evaluated per epoch.

/// The learning rate for a 0-based epoch.
pub trait LrSchedule: Send + Sync {
    fn lr(&self, epoch: usize) -> f32;
}

pub struct Constant(pub f32);

impl LrSchedule for Constant {
    fn lr(&self, _epoch: usize) -> f32 {
        self.0
    }
}

/// `lr * factor^(epoch / every)`.
pub struct StepDecay {
    pub lr: f32,
    pub factor: f32,
    pub every: usize,
}

impl LrSchedule for StepDecay {
    fn lr(&self, epoch: usize) -> f32 {
        self.lr * self.factor.powi((epoch / self.every.max(1)) as i32)
    }
}

/// Cosine decay from `lr` to `lr * floor` over `epochs`.
pub struct Cosine {
    pub lr: f32,
    pub epochs: usize,
    pub floor: f32,
}

impl LrSchedule for Cosine {
    fn lr(&self, epoch: usize) -> f32 {
        let t = (epoch as f32 / self.epochs.max(1) as f32).min(1.0);
        let c = 0.5 * (1.0 + (std::f32::consts::PI * t).cos());
        self.lr * (self.floor + (1.0 - self.floor) * c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Constant(0.1).lr(7), 0.1);
        let s = StepDecay {
            lr: 1.0,
            factor: 0.5,
            every: 2,
        };
        assert_eq!((s.lr(0), s.lr(1), s.lr(2), s.lr(5)), (1.0, 1.0, 0.5, 0.25));
        let c = Cosine {
            lr: 1.0,
            epochs: 10,
            floor: 0.0,
        };
        assert_eq!(c.lr(0), 1.0);
        assert!((c.lr(5) - 0.5).abs() < 1e-6);
        assert!(c.lr(10).abs() < 1e-6);
    }
}
