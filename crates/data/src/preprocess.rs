//! Pixel scaling before the network.

/// `Mobilenet`: `x / 127.5 - 1`, what the ImageNet weights expect. `Unit`: `x / 255`, what the study used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Preprocess {
    #[default]
    Mobilenet,
    Unit,
}

impl Preprocess {
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Preprocess::Mobilenet => v / 127.5 - 1.0,
            Preprocess::Unit => v / 255.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preprocess::Mobilenet => "mobilenet",
            Preprocess::Unit => "unit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mobilenet" => Some(Preprocess::Mobilenet),
            "unit" => Some(Preprocess::Unit),
            _ => None,
        }
    }
}
